"""parse_model and parse_items: JSON in a text stream, validated with pydantic as it arrives.

Both skip prose or a Markdown fence before the first ``{`` or ``[`` and ignore whatever
follows the end of that value. Parsing is incremental
(an incremental JSON parser), so the cost is linear in
the output's size however finely it is chunked.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import NoneType, UnionType
from typing import Annotated, Any, Final, TypeVar, Union, cast, get_args, get_origin

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    RootModel,
    TypeAdapter,
    ValidationError,
    create_model,
)
from reactivex import Observable, abc

from kagura._json.incremental import MISSING, IncrementalJSONParser, JSONSyntaxError
from kagura.errors import ConfigError, ParseError

__all__ = ["parse_items", "parse_model"]

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")

_START: Final = re.compile(r"[{\[]")
_DECODER: Final = json.JSONDecoder()

# Default spacing of snapshots, in characters of input: per open container a snapshot
# rebuilds, plus one per this many list items or dict entries it copies. A snapshot then
# costs a small constant per character of input, whatever the document's shape (see
# benchmarks/bench_partial_parse.py).
_CHARS_PER_LEVEL: Final = 8
_ENTRIES_PER_CHAR: Final = 64


def parse_model(
    model: type[_M], *, partial: bool = False, every: int | None = None
) -> Callable[[Observable[str]], Observable[_M]]:
    """Parse the JSON in a text stream into ``model``.

    Without ``partial``: one model, validated when the stream completes. With
    ``partial=True``: snapshots while the document grows, then
    ``model.model_validate_json(document)`` as soon as it closes. Snapshots are
    ``model_construct``-ed from validated parts (each completed field, item or value is
    validated once, in Python mode, and reused): a string in progress shows its prefix if
    that validates, a number or literal shows once complete, a field not yet started is
    unset (its default, or no attribute). A snapshot is emitted when something visible
    changed and ``every`` characters arrived since the last one (at least one per 64
    entries of the open lists it copies, so the cost stays linear). By default, ``every``
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

    def _parse_model(source: Observable[str]) -> Observable[_M]:
        def subscribe(
            observer: abc.ObserverBase[_M], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if partial:
                on_next, on_completed = _partial_handlers(model, every, observer)
            else:
                on_next, on_completed = _whole_handlers(model, observer)
            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

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
            stopped = False
            count = 0

            def on_value(value: Any, start: int, end: int) -> None:
                nonlocal found
                if _is_target(parser, field, value):
                    found = True
                elif _in_target(parser, field):
                    spans.append((start, end))

            parser = IncrementalJSONParser(on_value=on_value)

            def fail(message: str, errors: list[Any]) -> None:
                nonlocal stopped
                stopped = True
                observer.on_error(ParseError(message, raw_text=parser.text(), errors=errors))

            def on_next(chunk: str) -> None:
                nonlocal count, found
                if stopped:
                    return
                try:
                    parser.feed(chunk)
                except JSONSyntaxError as exc:
                    if count:  # items already emitted: too late to look elsewhere
                        fail(f"not JSON: {exc}", _container_errors(model, field, parser))
                        return
                    spans.clear()
                    found = False
                    parser.restart()  # prose that looked like JSON: try the next bracket
                for start, end in spans:
                    try:
                        item = adapter.validate_json(parser.text(start, end))
                    except ValidationError as exc:
                        fail(f"item {count} did not validate as {_name(model)}", exc.errors())
                        return
                    count += 1
                    observer.on_next(item)
                spans.clear()

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

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

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
    shape: TypeAdapter[Any] = TypeAdapter(items)
    try:
        shape.validate_json(_document(parser.text()))
    except ValidationError as exc:
        return exc.errors()
    return []


def _name(model: Any) -> str:
    return getattr(model, "__name__", repr(model))


# --- parse_model without partial --------------------------------------------------------


def _whole_handlers(
    model: type[_M], observer: abc.ObserverBase[_M]
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


def _document(text: str) -> str:
    """The first JSON object or array in ``text``, found as the incremental parser does.

    A candidate starts at a ``{`` or ``[``; if it is not JSON, the search resumes at the
    offending character. With no complete candidate: the text from the first one on
    (so that pydantic reports why it fails), or the whole text if there is none.
    """
    first = -1
    pos = 0
    while (match := _START.search(text, pos)) is not None:
        start = match.start()
        if first < 0:
            first = start
        try:
            _, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            pos = max(start + 1, exc.pos)
        except RecursionError:
            pos = start + 1
        else:
            return text[start:end]
    return text if first < 0 else text[first:]


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
    model: type[_M], every: int | None, observer: abc.ObserverBase[_M]
) -> tuple[Callable[[str], None], Callable[[], None]]:
    parser = IncrementalJSONParser()
    builder = _SnapshotBuilder(parser, _plan_for(model))
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
            parser.feed(chunk)
        except JSONSyntaxError:
            parser.restart()  # prose that looked like JSON: try the next bracket
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
                due = consumed + max(spacing, builder.width // _ENTRIES_PER_CHAR)
                observer.on_next(cast(_M, snapshot))

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


# --- plans: which type each part of the document has ---------------------------------------


class _Plan:
    """How to validate the entries of one JSON container, and what its children are.

    A plan reads a JSON object as a pydantic ``model``, or a ``dict``/``list`` whose
    entries have one annotation. Adapters and child plans are built on first use and
    kept, so a recursive model costs nothing until the document actually nests.
    """

    __slots__ = (
        "_children",
        "_defaults",
        "_validators",
        "annotations",
        "fast",
        "is_list",
        "model",
        "names",
        "order",
    )

    def __init__(
        self, *, model: type[BaseModel] | None = None, is_list: bool = False, entry: Any = Any
    ) -> None:
        self.model = model
        self.is_list = is_list
        self.names: dict[str, str] = {}  # JSON key -> field name (models only)
        self.annotations: dict[str, Any] = {}  # field name -> annotation ("" for dict/list)
        self.order: dict[str, int] = {}  # field name -> position in the model
        self._validators: dict[str, Callable[[Any], Any]] = {}
        self._children: dict[str, _Plan | None] = {}
        self._defaults: tuple[dict[str, Any], dict[str, Callable[[], Any]]] | None = None
        # Build snapshots without model_construct's per-field alias lookups when nothing
        # (a post-init hook, private attributes, extra fields) needs it: 3 times cheaper.
        self.fast = model is not None and not (
            model.__pydantic_post_init__
            or model.__private_attributes__
            or model.model_config.get("extra") == "allow"
        )
        if model is None:
            self.annotations[""] = entry
            return
        for name, info in model.model_fields.items():
            self.order[name] = len(self.order)
            self.annotations[name] = info.rebuild_annotation()
            keys = [name]
            if info.alias is not None:
                keys.append(info.alias)
            alias = info.validation_alias
            if isinstance(alias, str):
                keys.append(alias)
            elif isinstance(alias, AliasChoices):
                keys.extend(c for c in alias.choices if isinstance(c, str))
            for key in keys:
                self.names.setdefault(key, name)

    def name(self, key: str | None) -> str | None:
        """The field (or dict key) that JSON ``key`` fills; ``None`` if it fills nothing."""
        if self.model is None:
            return key
        return None if key is None else self.names.get(key)

    def validator(self, key: str | None) -> Callable[[Any], Any] | None:
        """What validates the entry at ``key`` (any key for a dict or a list), in Python mode."""
        name = "" if self.model is None else self.name(key)
        if name is None:
            return None
        validate = self._validators.get(name)
        if validate is None:
            adapter: TypeAdapter[Any] = TypeAdapter(self.annotations[name])
            validate = self._validators[name] = adapter.validator.validate_python
        return validate

    def child(self, key: str | None) -> _Plan | None:
        """The plan of a container entry at ``key``, or ``None`` to show it only once complete."""
        name = "" if self.model is None else self.name(key)
        if name is None:
            return None
        if name not in self._children:
            self._children[name] = _plan_for(self.annotations[name])
        return self._children[name]

    def defaults(self) -> dict[str, Any] | None:
        """The defaults of the model's optional fields, for one object (``None``: unused).

        Plain defaults are shared by every snapshot; factories run once per object.
        """
        if self._defaults is None:
            assert self.model is not None
            plain: dict[str, Any] = {}
            factories: dict[str, Callable[[], Any]] = {}
            for name, info in self.model.model_fields.items():
                if info.default_factory is None:
                    if not info.is_required():
                        plain[name] = info.get_default()
                elif inspect.signature(info.default_factory).parameters:
                    self.fast = False  # it takes the other fields: let model_construct do it
                else:
                    factories[name] = cast(Callable[[], Any], info.default_factory)
            self._defaults = (plain, factories)
        if not self.fast:
            return None
        plain, factories = self._defaults
        if not factories:
            return plain
        return {**plain, **{name: factory() for name, factory in factories.items()}}

    def put(self, values: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        """``values`` (in field order) with ``name`` set: in place when the order allows."""
        order = self.order
        if name in values or not values or order[next(reversed(values))] < order[name]:
            values[name] = value  # stays in field order
            return values
        values[name] = value
        return {n: values[n] for n in order if n in values}


_PLANS: dict[Any, _Plan | None] = {}  # shared by every parse_model: validators cost to build
_MAX_PLANS: Final = 1024


def _plan_for(annotation: Any) -> _Plan | None:
    """The plan for values of ``annotation``; ``None`` when partial views are not supported.

    Supported: pydantic models (not root models), ``list[X]``, ``dict[str, X]``, and those
    wrapped in ``Annotated`` or ``Optional``. Anything else (unions of several types,
    tuples, sets, dataclasses...) appears in snapshots only once complete.
    """
    try:
        return _PLANS[annotation]
    except KeyError:
        pass
    except TypeError:  # unhashable metadata inside Annotated: no caching
        return _make_plan(annotation)
    if len(_PLANS) >= _MAX_PLANS:  # models made at run time must not pile up
        _PLANS.clear()
    plan = _PLANS[annotation] = _make_plan(annotation)
    return plan


def _make_plan(annotation: Any) -> _Plan | None:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return _plan_for(args[0])
    if origin is Union or origin is UnionType:
        options = [a for a in args if a is not NoneType]
        return _plan_for(options[0]) if len(options) == 1 else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel) and not issubclass(annotation, RootModel):
            return _Plan(model=annotation)
        if annotation is list:
            return _Plan(is_list=True)
        if annotation is dict:
            return _Plan()
    if origin is list:
        return _Plan(is_list=True, entry=args[0] if args else Any)
    if origin is dict:
        return _Plan(entry=args[1] if len(args) == 2 else Any)
    return None


# --- snapshots: the open part of the document, rebuilt from cached validated parts ----------


_LIST, _DICT, _FAST_MODEL, _MODEL = range(4)  # kinds of view
_setattr: Final = object.__setattr__


@dataclass(slots=True)
class _View:
    """Validated entries of one open container, kept between snapshots."""

    plan: _Plan
    container: dict[str, Any] | list[Any]
    kind: int = _LIST
    seen: int = 0  # container entries already validated
    items: list[Any] = dataclass_field(default_factory=list[Any])  # a list's valid items
    fields: dict[str, Any] = dataclass_field(default_factory=dict[str, Any])  # object, valid
    fields_set: set[str] = dataclass_field(default_factory=set[str])
    base: dict[str, Any] = dataclass_field(default_factory=dict[str, Any])  # fields, defaults
    added: list[tuple[str | None, Any]] = dataclass_field(default_factory=list[Any])
    key: str | None = None  # the key of the entry in progress ...
    name: str | None = None  # ... and its field name
    child: Any = MISSING  # the entry in progress in the last node built
    child_name: str | None = None  # ... and its field name or key
    node: Any = MISSING  # the last node built
    text: str | None = None  # the string in progress, as last validated
    text_value: Any = MISSING  # ... and its validated value

    def __post_init__(self) -> None:
        plan = self.plan
        if plan.is_list:
            return
        if plan.model is None:
            self.kind = _DICT
            return
        defaults = plan.defaults()
        if defaults is None:
            self.kind = _MODEL
        else:
            self.kind = _FAST_MODEL
            self.base = dict(defaults)

    def sync(self) -> bool:
        """Validate the entries completed since the last call; whether any was valid."""
        container = self.container
        new = len(container) - self.seen
        self.seen += new
        self.text = None
        plan = self.plan
        added = self.added
        added.clear()
        if isinstance(container, list):
            validate = plan.validator(None)
            assert validate is not None
            for item in container[-new:]:
                try:
                    value = validate(item)
                except ValidationError:
                    continue  # invalid: left out of snapshots; the final validation reports it
                self.items.append(value)
                added.append((None, value))
            return bool(added)
        keys = [next(reversed(container))] if new == 1 else list(container)[-new:]
        for key in keys:
            name = plan.name(key)
            validate = plan.validator(key)
            if name is None or validate is None:
                continue
            try:
                value = validate(container[key])
            except ValidationError:
                continue
            self.fields[name] = value
            self.fields_set.add(name)
            self.base = plan.put(self.base, name, value) if plan.model else self.fields
            added.append((name, value))
        return bool(added)

    def partial_text(self, key: str | None, text: str) -> Any:
        """The validated prefix of the string in progress at ``key`` (MISSING if invalid)."""
        if text != self.text:
            self.text = text
            validate = self.plan.validator(key)
            try:
                self.text_value = MISSING if validate is None else validate(text)
            except ValidationError:
                self.text_value = MISSING
        return self.text_value

    def build(self, key: str | None, child: Any) -> Any:
        """This container's snapshot, with ``child`` (unless MISSING) as the entry in progress."""
        if len(self.container) != self.seen and self.sync():
            if (
                child is MISSING
                and self.node is not MISSING
                and self.added == [(self.child_name, self.child)]
            ):  # the entry in progress completed, as it was shown: nothing visible changed
                self.child = MISSING
                return self.node
        elif child is self.child and self.node is not MISSING:
            return self.node
        self.child = child
        kind = self.kind
        if kind == _LIST:
            node: Any = [*self.items, child] if child is not MISSING else self.items[:]
            self.node = node
            return node
        if key != self.key:
            self.key = key
            self.name = self.plan.name(key)
        name = self.child_name = self.name
        if kind == _DICT:
            node = dict(self.fields)
            if child is not MISSING and name is not None:
                node[name] = child
            self.node = node
            return node
        values = self.base.copy()
        fields_set = self.fields_set.copy()
        if child is not MISSING and name is not None:
            values = self.plan.put(values, name, child)
            fields_set.add(name)
        model = self.plan.model
        assert model is not None
        if kind == _FAST_MODEL:  # what model_construct does, without its per-field lookups
            node = model.__new__(model)
            _setattr(node, "__dict__", values)
            _setattr(node, "__pydantic_fields_set__", fields_set)
            _setattr(node, "__pydantic_extra__", None)
            _setattr(node, "__pydantic_private__", None)
        else:
            try:
                node = model.model_construct(**{n: values[n] for n in fields_set})
            except Exception:  # a model_post_init hook may reject partial data: skip it
                node = self.node
        self.node = node
        return node


@dataclass(slots=True)
class _SnapshotBuilder:
    """Builds a snapshot by walking the parser's open containers, deepest first."""

    parser: IncrementalJSONParser
    root: _Plan | None
    views: list[_View] = dataclass_field(default_factory=list[_View])
    width: int = 0  # list items and dict entries the last snapshot copied

    def snapshot(self) -> Any:
        """The model so far, or MISSING if there is nothing to show."""
        containers = self.parser.containers
        keys = self.parser.keys
        views = self.views
        depth = 0
        while (
            depth < len(views)
            and depth < len(containers)
            and views[depth].container is containers[depth]
        ):
            depth += 1
        del views[depth:]
        while depth < len(containers):
            plan = self.root if depth == 0 else views[depth - 1].plan.child(keys[depth - 1])
            if plan is None or plan.is_list != isinstance(containers[depth], list):
                break
            views.append(_View(plan, containers[depth]))
            depth += 1
        if not views:
            return MISSING
        child: Any = MISSING
        depth = len(views) - 1
        if depth == len(containers) - 1:
            text = self.parser.partial_string()
            if text is not None:
                child = views[depth].partial_text(keys[depth], text)
        width = 0
        while depth >= 0:
            view = views[depth]
            child = view.build(keys[depth], child)
            if view.plan.model is None:
                width += len(view.items) + len(view.fields)
            depth -= 1
        self.width = width
        return child
