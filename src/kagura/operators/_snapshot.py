"""Snapshots for ``parse_model(partial=True)``: the model so far, from a document still open.

A :class:`SnapshotBuilder` walks the open containers of an
:class:`~kagura._json.incremental.IncrementalJSONParser`, outermost first, with a plan per
container (:func:`plan_for`: how its entries validate, and what its children are). Each
completed entry is validated once, in Python mode, and kept; a snapshot rebuilds only the
open containers, with the entry in progress (a string prefix that validates, or the
snapshot of a nested container) as their last entry. Models are ``model_construct``-ed
(their ``model_fields_set`` marked, for :func:`~kagura.operators.is_complete`),
and when nothing needs ``model_construct``'s extra work (a post-init hook, private
attributes, extra fields, a default factory that reads the other fields) a faster
equivalent writes pydantic's instance attributes directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Union, cast, get_args, get_origin

from pydantic import AliasChoices, BaseModel, RootModel, TypeAdapter, ValidationError

from kagura._json.incremental import MISSING, IncrementalJSONParser
from kagura.operators._partial import unfinished

__all__ = ["SnapshotBuilder", "plan_for"]


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
        # (a post-init hook, private attributes, extra fields) needs it (bench_partial_parse).
        # It writes pydantic's private instance attributes: test_parse.py checks that it
        # gives what model_construct gives on the installed pydantic.
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
            self._children[name] = plan_for(self.annotations[name])
        return self._children[name]

    def defaults(self) -> dict[str, Any] | None:
        """The defaults of the model's optional fields, for one object (``None``: unused).

        Plain defaults are shared by every snapshot; factories run once per object. The
        defaults are in field order, as ``model_construct`` puts them.
        """
        if self._defaults is None:
            assert self.model is not None
            plain: dict[str, Any] = {}  # a factory's field holds its place, set per object
            factories: dict[str, Callable[[], Any]] = {}
            for name, info in self.model.model_fields.items():
                if info.default_factory is None:
                    if not info.is_required():
                        plain[name] = info.get_default()
                elif info.default_factory_takes_validated_data:
                    self.fast = False  # it takes the other fields: let model_construct do it
                else:
                    plain[name] = None
                    factories[name] = cast(Callable[[], Any], info.default_factory)
            self._defaults = (plain, factories)
        if not self.fast:
            return None
        plain, factories = self._defaults
        if not factories:
            return plain
        values = plain.copy()
        for name, factory in factories.items():
            values[name] = factory()  # in place: the field keeps its position
        return values

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


def plan_for(annotation: Any) -> _Plan | None:
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
        return plan_for(args[0])
    if origin is Union or origin is UnionType:
        options = [a for a in args if a is not NoneType]
        return plan_for(options[0]) if len(options) == 1 else None
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

    def _shown(self, added: list[tuple[str | None, Any]]) -> bool:
        """Whether ``added`` is just the entry in progress as the last node showed it."""
        try:
            return added == [(self.child_name, self.child)]
        except RecursionError:  # nested too deeply to compare: show it again
            return False

    def build(self, key: str | None, child: Any) -> Any:
        """This container's snapshot, with ``child`` (unless MISSING) as the entry in progress."""
        if len(self.container) != self.seen and self.sync():
            if child is MISSING and self.node is not MISSING and self._shown(self.added):
                self.child = MISSING  # the entry in progress completed, as it was shown
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
        fields_set = unfinished(self.fields_set)  # marks it partial (is_complete)
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
                node = model.model_construct(fields_set, **{n: values[n] for n in fields_set})
            except Exception:  # a model_post_init hook may reject partial data: skip it
                node = self.node
        self.node = node
        return node


@dataclass(slots=True)
class SnapshotBuilder:
    """Builds a snapshot by walking the parser's open containers, deepest first."""

    parser: IncrementalJSONParser
    root: _Plan | None
    views: list[_View] = dataclass_field(default_factory=list[_View])
    width: int = 0  # list items, dict entries and string characters the last snapshot copied

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
        width = 0
        if depth == len(containers) - 1:
            text = self.parser.partial_string()
            if text is not None:
                width = len(text)  # joined, compared and validated whole: O(len) per snapshot
                child = views[depth].partial_text(keys[depth], text)
        while depth >= 0:
            view = views[depth]
            child = view.build(keys[depth], child)
            if view.plan.model is None:
                width += len(view.items) + len(view.fields)
            depth -= 1
        self.width = width
        return child
