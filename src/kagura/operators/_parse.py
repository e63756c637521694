"""parse_model and parse_items: JSON in a text stream, validated with pydantic as it arrives.

Both skip prose or a Markdown fence before the first ``{`` or ``[`` and ignore whatever
follows the end of that value. Parsing is incremental
(:mod:`kagura._json.incremental`), so the cost is linear in the output's size however
finely it is chunked; partial models are built by :mod:`kagura.operators._snapshot`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, cast, overload

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model
from reactivex import Observable, abc

from kagura._json import first_json_value
from kagura._json.incremental import MISSING, IncrementalJSONParser, JSONSyntaxError
from kagura.errors import ConfigError, ParseError
from kagura.operators._guard import deliver_errors
from kagura.operators._partial import Partial
from kagura.operators._snapshot import SnapshotBuilder, plan_for

__all__ = ["parse_items", "parse_model"]

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")

_START: Final = re.compile(r"[{\[]")

# Default spacing of snapshots, in characters of input: per open container a snapshot
# rebuilds, plus one per this many list items, dict entries or characters of the string in
# progress it copies. A snapshot then costs a small constant per character of input,
# whatever the document's shape: a 2 MB string value gets a few hundred snapshots, not
# half a million copies of itself (see benchmarks/bench_partial_parse.py).
_CHARS_PER_LEVEL: Final = 8
_COPIED_PER_CHAR: Final = 64


@overload
def parse_model(
    model: type[_M], *, partial: Literal[False] = False, every: int | None = None
) -> Callable[[Observable[str]], Observable[_M]]: ...
@overload
def parse_model(
    model: type[_M], *, partial: bool, every: int | None = None
) -> Callable[[Observable[str]], Observable[Partial[_M]]]: ...
def parse_model(
    model: type[_M], *, partial: bool = False, every: int | None = None
) -> Callable[[Observable[str]], Observable[Partial[_M]]]:
    """Parse the JSON in a text stream into ``model``.

    Without ``partial``: one model, validated when the stream completes. With
    ``partial=True``: snapshots while the document grows, then
    ``model.model_validate_json(document)`` as soon as it closes. The snapshots lack the
    fields not started yet, so they are typed :class:`~kagura.operators.Partial` ``[model]``:
    read them with :func:`~kagura.operators.peek`, or check
    :func:`~kagura.operators.is_complete` (true of the last emission only). Snapshots are
    ``model_construct``-ed from validated parts (each completed field, item or value is
    validated once, in Python mode, and reused): a string in progress shows its prefix if
    that validates, a number or literal shows once complete, a field not yet started is
    unset (its default, or no attribute). A snapshot is emitted when something visible
    changed and ``every`` characters arrived since the last one (at least one per 64
    entries of the open lists it copies, or characters of the string in progress, so the
    cost stays linear: a long string shows its prefix less often as it grows). By default, ``every``
    is 8 per open container, for a small constant cost per character of input;
    ``every=1`` emits nearly every change. Snapshots share their unchanged parts: treat
    them as read-only.

    Raises :class:`~kagura.errors.ParseError` (``raw_text``: the text so far, ``errors``:
    pydantic's) if the document does not validate or the stream ends before it closes.

    Marble, ``partial=True, every=1`` (``a='{"name": "Al'``, ``b='ice"'``,
    ``c=', "age": 3'``, ``d='6}'``; ``x``, ``y``, ``z``: ``User`` with ``name="Al"``,
    ``name="Alice"``, then ``name="Alice", age=36``)::

        source: -a-b-c-d-|
        result: -x-y---z-|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> from pydantic import BaseModel
    >>> class User(BaseModel):
    ...     name: str
    ...     age: int
    >>> chunks = ['Here: ```json\\n{"name": "Al', 'ice", "age": 3', '6}\\n```']
    >>> reactivex.from_iterable(chunks).pipe(parse_model(User)).run()
    User(name='Alice', age=36)
    >>> reactivex.from_iterable(chunks).pipe(
    ...     parse_model(User, partial=True, every=1), rx.map(BaseModel.model_dump), rx.to_list()
    ... ).run()
    [{'name': 'Al'}, {'name': 'Alice'}, {'name': 'Alice', 'age': 36}]
    """
    if every is not None and every < 1:
        raise ConfigError(f"parse_model every must be at least 1, got {every!r}")

    def _parse_model(source: Observable[str]) -> Observable[Partial[_M]]:
        def subscribe(
            observer: abc.ObserverBase[Partial[_M]], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if partial:
                on_next, on_completed = _partial_handlers(model, every, observer)
            else:
                on_next, on_completed = _whole_handlers(model, observer)
            return source.subscribe(
                on_next,
                observer.on_error,
                deliver_errors(observer, on_completed),
                scheduler=scheduler,
            )

        return Observable(subscribe)

    return _parse_model


def parse_items(
    model: type[_T], *, field: str | None = None
) -> Callable[[Observable[str]], Observable[_T]]:
    """Emit each element of the top-level JSON array as soon as it is complete and valid.

    With ``field``, the array is that field of a top-level object. Each element is
    validated with ``TypeAdapter(model).validate_json`` on its own text, so the items equal
    those of validating the whole list. A bad element, a document that is not JSON, or a
    stream that ends before the document closes raises :class:`~kagura.errors.ParseError`.

    Marble (``a='[{"x": 1}'``, ``b=', {"x"'``, ``c=': 2}]'``; ``x``, ``y``: ``P(x=1)``,
    ``P(x=2)``)::

        source: -a-b-c-|
        result: -x---y-|

    >>> import reactivex
    >>> from reactivex import operators as rx
    >>> from pydantic import BaseModel
    >>> class P(BaseModel):
    ...     x: int
    >>> chunks = ['{"points": [{"x": 1}', ', {"x"', ": 2}]}"]
    >>> reactivex.from_iterable(chunks).pipe(parse_items(P, field="points"), rx.to_list()).run()
    [P(x=1), P(x=2)]
    """
    adapter: TypeAdapter[_T] = TypeAdapter(model)

    def _parse_items(source: Observable[str]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            spans: list[tuple[int, int]] = []  # completed items not yet emitted
            found = False  # whether the target array was seen
            duplicate = False  # the target key came again after its array was seen
            stopped = False
            count = 0

            def on_value(value: Any, start: int, end: int) -> None:
                nonlocal found, duplicate
                if duplicate:
                    return
                if found and _is_field(parser, field):
                    duplicate = True  # a value, or an item of a second array, for that key
                elif _is_target(parser, field, value):
                    found = True
                elif _in_target(parser, field):
                    spans.append((start, end))

            parser = IncrementalJSONParser(on_value=on_value)

            def fail(message: str, errors: list[Any]) -> None:
                nonlocal stopped
                stopped = True
                observer.on_error(ParseError(message, raw_text=parser.text(), errors=errors))

            def emit() -> bool:
                """Validate and emit the items in ``spans``; False if one failed."""
                nonlocal count
                for start, end in spans:
                    try:
                        item = adapter.validate_json(parser.text(start, end))
                    except ValidationError as exc:
                        fail(f"item {count} did not validate as {_name(model)}", exc.errors())
                        return False
                    count += 1
                    observer.on_next(item)
                spans.clear()
                return True

            def on_next(chunk: str) -> None:
                nonlocal found
                if stopped:
                    return
                try:
                    try:
                        parser.feed(chunk)
                    except JSONSyntaxError:
                        # An item completed before the error is emitted in some chunking, so
                        # in every one: the error is then final (too late to look elsewhere).
                        if count or spans:
                            raise
                        found = False
                        parser.restart()  # prose that looked like JSON: try the next bracket
                except ValueError as exc:  # that syntax error, or a number Python cannot convert
                    if emit():
                        fail(_unreadable(exc), _container_errors(model, field, parser))
                    return
                if emit() and duplicate:
                    fail(
                        f"the JSON has the key {field!r} twice: its last value would win, "
                        "but items of an earlier one were already emitted",
                        _container_errors(model, field, parser),
                    )

            def on_completed() -> None:
                if stopped:
                    return
                if not parser.done:
                    fail(
                        "the stream ended before the JSON did",
                        _container_errors(model, field, parser),
                    )
                elif not found:
                    where = "a top-level array" if field is None else f"an array field {field!r}"
                    fail(f"the JSON has no {where}", _container_errors(model, field, parser))
                else:
                    observer.on_completed()

            return source.subscribe(
                on_next,
                observer.on_error,
                deliver_errors(observer, on_completed),
                scheduler=scheduler,
            )

        return Observable(subscribe)

    return _parse_items


# --- parse_items helpers ---------------------------------------------------------------


def _in_target(parser: IncrementalJSONParser, field: str | None) -> bool:
    """Whether the value just completed is an element of the target array."""
    containers = parser.containers
    if field is None:
        return len(containers) == 1 and isinstance(containers[0], list)
    return (
        len(containers) == 2
        and isinstance(containers[0], dict)
        and parser.keys[0] == field
        and isinstance(containers[1], list)
    )


def _is_field(parser: IncrementalJSONParser, field: str | None) -> bool:
    """Whether the value just completed belongs to the target key (itself or inside it)."""
    containers = parser.containers
    return (
        field is not None
        and bool(containers)
        and isinstance(containers[0], dict)
        and parser.keys[0] == field
    )


def _is_target(parser: IncrementalJSONParser, field: str | None, value: Any) -> bool:
    """Whether the value just completed is the target array itself."""
    if not isinstance(value, list):
        return False
    containers = parser.containers
    if field is None:
        return not containers
    return len(containers) == 1 and isinstance(containers[0], dict) and parser.keys[0] == field


def _container_errors(model: Any, field: str | None, parser: IncrementalJSONParser) -> list[Any]:
    """pydantic's errors for the document as a whole (``[]`` if it happens to validate)."""
    items = cast(Any, list)[model]
    if field is not None:
        items = create_model("Items", items=(items, Field(alias=field)))
    return _errors(items, parser.text())


# --- shared -------------------------------------------------------------------------------


def _document(text: str) -> str:
    """The first JSON value in ``text`` (:func:`~kagura._json.first_json_value`).

    With none complete: the text from the first ``{`` or ``[`` on (so that pydantic
    reports why it fails), or the whole text if there is none.
    """
    value = first_json_value(text)
    if value is not None:
        return value
    first = _START.search(text)
    return text if first is None else text[first.start() :]


def _errors(shape: Any, text: str) -> list[Any]:
    """pydantic's errors for the document in ``text`` read as ``shape`` (``[]`` if valid)."""
    adapter: TypeAdapter[Any] = TypeAdapter(shape)
    try:
        adapter.validate_json(_document(text))
    except ValidationError as exc:
        return exc.errors()
    return []


def _unreadable(exc: ValueError) -> str:
    """Why the incremental parser stopped: a syntax error, or a number Python cannot convert.

    A number of over 4,300 digits (``sys.get_int_max_str_digits()``) raises a plain
    ``ValueError`` in the parser and leaves it unusable; pydantic rejects it as well.
    """
    if isinstance(exc, JSONSyntaxError):
        return f"not JSON: {exc}"
    return f"the JSON has a number Python cannot read: {exc}"


def _name(model: Any) -> str:
    return getattr(model, "__name__", repr(model))


# --- parse_model without partial --------------------------------------------------------


def _whole_handlers(
    model: type[_M], observer: abc.ObserverBase[Partial[_M]]
) -> tuple[Callable[[str], None], Callable[[], None]]:
    chunks: list[str] = []

    def on_completed() -> None:
        text = "".join(chunks)
        try:
            result = _validate_whole(model, text)
        except ParseError as exc:
            observer.on_error(exc)
            return
        observer.on_next(result)
        observer.on_completed()

    return chunks.append, on_completed


def _validate_whole(model: type[_M], text: str) -> _M:
    """Validate the JSON document in ``text`` (see :func:`_document`); ParseError if invalid."""
    try:
        return model.model_validate_json(_document(text))
    except ValidationError as exc:
        raise _parse_error(model, text, exc) from exc


def _parse_error(model: Any, text: str, exc: ValidationError) -> ParseError:
    first = exc.errors()[0]["msg"] if exc.error_count() else str(exc)
    return ParseError(
        f"output did not validate as {_name(model)}: {first}"
        + (f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""),
        raw_text=text,
        errors=exc.errors(),
    )


# --- parse_model(partial=True) ------------------------------------------------------------


def _partial_handlers(
    model: type[_M], every: int | None, observer: abc.ObserverBase[Partial[_M]]
) -> tuple[Callable[[str], None], Callable[[], None]]:
    parser = IncrementalJSONParser()
    builder = SnapshotBuilder(parser, plan_for(model))
    consumed = 0  # characters received
    due = _CHARS_PER_LEVEL if every is None else every  # `consumed` for the next snapshot
    changes = 0  # parser.changes at the previous snapshot
    last: Any = MISSING  # the previous snapshot
    finished = False  # the document closed (the rest of the text is ignored) or failed
    failed = False

    def on_next(chunk: str) -> None:
        nonlocal consumed, due, changes, last, finished, failed
        if finished:
            return
        consumed += len(chunk)
        try:
            try:
                parser.feed(chunk)
            except JSONSyntaxError:
                parser.restart()  # prose that looked like JSON: try the next bracket
        except ValueError as exc:  # a number Python cannot convert: the parser cannot go on
            finished = failed = True
            text = parser.text()
            observer.on_error(
                ParseError(_unreadable(exc), raw_text=text, errors=_errors(model, text))
            )
            return
        if parser.end >= 0:
            finished = True
            try:
                result = model.model_validate_json(parser.document())
            except ValidationError as exc:
                failed = True
                observer.on_error(_parse_error(model, parser.text(), exc))
                return
            observer.on_next(result)
        elif consumed >= due and parser.changes != changes:
            changes = parser.changes
            snapshot = builder.snapshot()
            if snapshot is not MISSING and snapshot is not last:
                last = snapshot
                spacing = _CHARS_PER_LEVEL * len(builder.views) if every is None else every
                due = consumed + max(spacing, builder.width // _COPIED_PER_CHAR)
                observer.on_next(cast(Partial[_M], snapshot))

    def on_completed() -> None:
        if failed:
            return
        if not finished:
            try:
                result = _validate_whole(model, parser.text())
            except ParseError as exc:
                observer.on_error(exc)
                return
            observer.on_next(result)
        observer.on_completed()

    return on_next, on_completed
