"""A griffe extension: kagura's reST-flavoured docstrings, rendered as Markdown.

kagura's docstrings are written for ``help()``, pydoc and doctest: Google-style
sections (which mkdocstrings parses), plus three reST habits that Markdown would
mangle. This extension rewrites each docstring before mkdocstrings parses it:

- ``>>>`` doctest runs (with their expected output) become ``pycon`` code blocks;
  Markdown would otherwise read ``>>>`` as a triple-nested quote.
- a paragraph ending in ``::`` followed by an indented block (the marble
  diagrams, usage sketches) becomes a fenced code block, highlighted as Python
  when it starts like Python.
- a definition list (a line holding only an inline literal, then its indented
  definition) becomes a bullet list.
- ``:func:`~kagura.x.y``` roles (also ``:class:``, ``:mod:``, ``:meth:``, ``:data:``,
  ``:attr:``, ``:exc:``) become cross-references when the target is documented,
  and plain code otherwise. Unqualified names resolve from the docstring's own
  class and module, as Sphinx does.

The source docstrings stay as they are: one text, read by every tool.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const):`(~?)([^`]+)`")
_DOCTEST = re.compile(r"^(\s*)>>> ")
_TERM = re.compile(r"^(\s*)(``[^`]+``)\s*$")
_PYTHON_STARTS = ("from ", "import ", "@", "def ", "async def ", "class ", "await ")
_PACKAGES = ("kagura.", "reactivex.", "pydantic.", "structlog.")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _resolve(obj: griffe.Object, target: str) -> str:
    """The dotted path ``target`` names, seen from ``obj`` (best effort)."""
    target = target.strip().removesuffix("()")
    if target == "kagura" or target.startswith(_PACKAGES):
        return target
    first, _, rest = target.lstrip(".").partition(".")
    scope: Any = obj
    while scope is not None:
        members = getattr(scope, "members", {})
        if first in members:
            found = members[first]
            path = found.path
            return f"{path}.{rest}" if rest else path
        scope = scope.parent
    return target


def _roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        identifier = _resolve(obj, target)
        shown = target.strip()
        if short:
            shown = shown.rsplit(".", 1)[-1]
        label = f"<code>{shown}</code>"
        return f'<autoref identifier="{identifier}" optional>{label}</autoref>'

    return _ROLE.sub(replace, text)


def _blocks(text: str) -> str:
    """Fence doctest runs and ``::`` literal blocks."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if in_fence:
            out.append(line)
            i += 1
            continue
        doctest = _DOCTEST.match(line)
        if doctest:
            indent = doctest.group(1)
            block: list[str] = []
            # A doctest run ends at a blank line (its expected output may follow the code).
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            continue
        term = _TERM.match(line)
        if term and i + 1 < len(lines) and _indent(lines[i + 1]) > len(term.group(1)):
            # A reST definition list entry: "``delta``" then its indented definition.
            pad = term.group(1)
            j = i + 1
            definition: list[str] = []
            while j < len(lines) and lines[j].strip() and _indent(lines[j]) > len(pad):
                definition.append(lines[j].strip())
                j += 1
            if out and out[-1].strip() and not out[-1].lstrip().startswith("- "):
                out.append("")
            out.append(f"{pad}- {term.group(2)}: " + f"\n{pad}  ".join(definition))
            i = j
            continue
        if stripped.endswith("::") and not stripped.startswith(("-", "*")):
            # A literal block: the next indented lines, after one blank line.
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = len(line) - len(line.lstrip())
            if j < len(lines) and len(lines[j]) - len(lines[j].lstrip()) > base:
                body_indent = len(lines[j]) - len(lines[j].lstrip())
                body: list[str] = []
                k = j
                while k < len(lines) and (
                    not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= body_indent
                ):
                    body.append(lines[k][body_indent:])
                    k += 1
                while body and not body[-1].strip():
                    body.pop()
                if stripped != "::":
                    out.append(line.rstrip()[:-1])  # "Marble::" -> "Marble:"
                pad = " " * base
                lang = "python" if body and body[0].startswith(_PYTHON_STARTS) else "text"
                out += ["", f"{pad}```{lang}", *(pad + b if b else "" for b in body), f"{pad}```"]
                if k < len(lines):
                    out.append("")
                i = k
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded packages (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        docstring = obj.docstring
        docstring.value = _roles(obj, _blocks(docstring.value))
