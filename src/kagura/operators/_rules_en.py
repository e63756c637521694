"""English for the sentence segmenter: abbreviations, titles, times and their patterns.

The engine (:mod:`._segmenter`) knows punctuation, whitespace, Markdown and lists;
what a period after a word means is a language's, and this module is English's.
Another language is another module like this one, passed as ``rules=``.

>>> from kagura.operators._segmenter import segment
>>> segment("Dr. Lee left at 6 p.m. The rest stayed.", rules=ENGLISH)
['Dr. Lee left at 6 p.m. ', 'The rest stayed.']
"""

from __future__ import annotations

import re
from typing import Final

from kagura.operators._segmenter import SentenceRules

__all__ = ["ENGLISH"]

ENGLISH: Final = SentenceRules(
    # Abbreviations: lower case, without the final period.
    titles=frozenset(
        {
            "adm",
            "attys",
            "brig",
            "capt",
            "cmdr",
            "col",
            "cpl",
            "det",
            "dr",
            "fr",
            "gen",
            "gov",
            "hon",
            "ing",
            "lt",
            "maj",
            "messrs",
            "mr",
            "mrs",
            "ms",
            "mssrs",
            "mt",
            "ph",
            "pres",
            "prof",
            "rep",
            "reps",
            "rev",
            "sen",
            "sens",
            "sgt",
            "st",
            "supt",
        }
    ),
    before_numbers=frozenset(
        {
            "approx",
            "art",
            "ca",
            "ch",
            "chap",
            "eq",
            "eqs",
            "ext",
            "fig",
            "figs",
            "n°",
            "nº",
            "no",
            "nos",
            "op",
            "p",
            "pp",
            "ref",
            "refs",
            "sec",
            "tab",
            "vol",
            "vols",
            "jan",
            "feb",
            "mar",
            "apr",
            "jun",
            "jul",
            "aug",
            "sep",
            "sept",
            "oct",
            "nov",
            "dec",
        }
    ),
    never_final=frozenset({"e.g", "i.e", "cf", "viz", "vs", "v", "incl"}),
    # The titles of a person; the other titles (``st``, ``mt``) also end addresses.
    honorifics=frozenset(
        {
            "adm",
            "attys",
            "brig",
            "capt",
            "cmdr",
            "col",
            "cpl",
            "det",
            "dr",
            "fr",
            "gen",
            "gov",
            "hon",
            "lt",
            "maj",
            "messrs",
            "mr",
            "mrs",
            "ms",
            "mssrs",
            "pres",
            "prof",
            "rep",
            "reps",
            "rev",
            "sen",
            "sens",
            "sgt",
            "supt",
        }
    ),
    times=frozenset({"a.m", "p.m"}),
    starters=frozenset(
        {
            "A",
            "Being",
            "Did",
            "For",
            "He",
            "How",
            "However",
            "I",
            "In",
            "It",
            "Millions",
            "More",
            "She",
            "That",
            "The",
            "There",
            "They",
            "We",
            "What",
            "When",
            "Where",
            "Who",
            "Why",
            "This",
            "These",
            "Those",
            "You",
            "If",
            "But",
            "So",
            "Then",
            "Our",
            "My",
            "Its",
            "Their",
        }
    ),
    time_lead=re.compile(r"(?:[A-Za-z]+ )?\d{1,2}(?:[:.]\d{2})? ?[AaPp]\.[Mm]\."),
    word=re.compile("[A-Za-z]+"),
    initialism=re.compile(r"[A-Za-z](?:\.[A-Za-z])*"),
)
