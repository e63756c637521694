"""Prompt templates: Jinja2 with StrictUndefined, errors that name the agent and the variable."""

from __future__ import annotations

import jinja2
import pytest

from kagura.agents.prompt import PromptTemplate, render_prompt
from kagura.errors import ConfigError


def test_renders_variables_filters_and_blocks() -> None:
    template = PromptTemplate(
        "Items:\n{% for item in items %}\n- {{ item | title }}\n{% endfor %}\n"
        "Total: {{ items | length }}"
    )
    assert template.render({"items": ["tea", "cake"]}) == "Items:\n- Tea\n- Cake\nTotal: 2"


def test_variables_exclude_locals_and_globals() -> None:
    template = PromptTemplate(
        "{% set n = 3 %}{% for i in range(n) %}{{ i }}{% endfor %}"
        "{{ x }}{% for y in ys %}{{ y }}{% endfor %}"
    )
    assert template.variables == frozenset({"x", "ys"})


def test_missing_variable_names_the_agent_and_the_variable() -> None:
    template = PromptTemplate("Write about {{ topic }} in {{ style }}", name="agent 'story'")
    with pytest.raises(ConfigError, match=r"agent 'story'.*'style'.*available: topic"):
        template.render({"topic": "dragons"})


def test_undefined_attribute_is_a_config_error() -> None:
    template = PromptTemplate("{{ user.nmae }}", name="agent 'greet'")
    with pytest.raises(ConfigError, match=r"agent 'greet'.*nmae"):
        template.render({"user": {"name": "Ann"}})


class Account:
    @property
    def balance(self) -> int:
        raise LookupError("ledger offline")


@pytest.mark.parametrize(
    ("source", "variables", "cause", "match"),
    [
        ("Share:\n{{ total / people }}", {"total": 9, "people": 0}, ZeroDivisionError, "line 2"),
        ("{{ account.balance }}", {"account": Account()}, LookupError, "ledger offline"),
        ("{{ f() }}", {"f": lambda: [][1]}, IndexError, "line 1"),
        ("{{ n | int(1 // 0) }}", {"n": "3"}, ZeroDivisionError, "division"),
    ],
)
def test_runtime_errors_are_config_errors_with_the_cause(
    source: str, variables: dict[str, object], cause: type[Exception], match: str
) -> None:
    template = PromptTemplate(source, name="agent 'split'")
    with pytest.raises(
        ConfigError, match=rf"^agent 'split': the prompt template .*{match}"
    ) as info:
        template.render(variables)
    assert type(info.value.__cause__) is cause
    assert cause.__name__ in str(info.value)


def test_undefined_values_stay_config_errors_with_the_line() -> None:
    template = PromptTemplate("Hi\n{{ user.nmae }}", name="agent 'greet'")
    with pytest.raises(ConfigError, match=r"agent 'greet': undefined .* on line 2: .*nmae") as info:
        template.render({"user": {"name": "Ann"}})
    assert isinstance(info.value.__cause__, jinja2.UndefinedError)


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"agent 'x'.*line 2"):
        PromptTemplate("fine\n{{ broken ", name="agent 'x'")


def test_check_provided_lists_every_missing_variable() -> None:
    template = PromptTemplate("{{ a }} {{ b }} {{ c }}", name="agent 'f'")
    with pytest.raises(ConfigError, match=r"agent 'f'.*variables 'b', 'c'.*parameters: a"):
        template.check_provided({"a"})
    template.check_provided({"a", "b", "c", "d"})


def test_from_function_dedents_the_docstring() -> None:
    def story(topic: str) -> str:
        """Write a story about {{ topic }}.

        Keep it short.
        """
        return topic

    template = PromptTemplate.from_function(story)
    assert template.render({"topic": "tea"}) == "Write a story about tea.\n\nKeep it short."
    assert "story" in template.name


@pytest.mark.parametrize("doc", [None, "", "   \n  "])
def test_missing_docstring_is_a_clear_error(doc: str | None) -> None:
    def nameless() -> None: ...

    nameless.__doc__ = doc
    with pytest.raises(ConfigError, match=r"nameless has no docstring.*prompt template"):
        PromptTemplate.from_function(nameless)


def test_no_html_escaping() -> None:
    assert render_prompt("{{ code }}", code="<b>&</b>") == "<b>&</b>"


def test_values_are_not_templates() -> None:
    assert render_prompt("{{ text }}", text="{{ secret }}") == "{{ secret }}"
