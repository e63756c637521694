"""Partial: the type of a model still being written, and the two ways to read one.

``parse_model(Model, partial=True)`` and agents annotated ``-> AsyncIterator[Model]`` emit
snapshots of a JSON document that is still arriving: ``Model`` instances whose fields may be
missing (reading one raises ``AttributeError``) or unfinished (a string's prefix, a list's
first items). Type checkers see them as ``Partial[Model]``, which has the model's
serialisation methods but none of its fields, so ``draft.title`` is a type error until
:func:`is_complete` says the model is whole. :func:`peek` reads a part that may be missing
with its own type. At run time a snapshot is the model instance itself: ``model_dump()``,
``isinstance(draft, BaseModel)`` and SSE's ``partial`` events work as before.

>>> import reactivex
>>> from reactivex import operators as rx
>>> from pydantic import BaseModel
>>> from kagura.operators import parse_model
>>> class Recipe(BaseModel):
...     steps: list[str]
...     title: str
>>> chunks = ['{"steps": ["boil", "ste', 'ep"], "title": "Tea"}']
>>> drafts = reactivex.from_iterable(chunks).pipe(
...     parse_model(Recipe, partial=True, every=1), rx.to_list()
... ).run()
>>> for draft in drafts:
...     print(peek(draft, lambda r: r.title), peek(draft, lambda r: r.steps), is_complete(draft))
None ['boil', 'ste'] False
Tea ['boil', 'steep'] True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar, overload

from pydantic import BaseModel
from pydantic.main import IncEx
from typing_extensions import TypeIs

__all__ = ["Partial", "is_complete", "peek"]

_M = TypeVar("_M", bound=BaseModel)
_M_co = TypeVar("_M_co", bound=BaseModel, covariant=True)
_T = TypeVar("_T")


class Partial(Protocol[_M_co]):
    """A ``_M_co`` that may still lack fields: its serialisation, none of its attributes.

    Every instance of the model is one (so the last, complete snapshot is too); read the
    fields with :func:`peek`, or narrow with :func:`is_complete` first.
    """

    @property
    def model_fields_set(self) -> set[str]:
        """The fields the snapshot has so far (a field not started is missing)."""
        ...

    def model_dump(
        self,
        *,
        mode: Literal["json", "python"] = ...,
        include: IncEx | None = ...,
        exclude: IncEx | None = ...,
        by_alias: bool = ...,
        exclude_unset: bool = ...,
        exclude_defaults: bool = ...,
        exclude_none: bool = ...,
    ) -> dict[str, Any]:
        """The fields it has so far, as a dict (the missing ones left out)."""
        ...

    def model_dump_json(
        self,
        *,
        indent: int | None = ...,
        include: IncEx | None = ...,
        exclude: IncEx | None = ...,
        by_alias: bool = ...,
        exclude_unset: bool = ...,
        exclude_defaults: bool = ...,
        exclude_none: bool = ...,
    ) -> str:
        """The fields it has so far, as JSON (what ``kagura.web`` sends)."""
        ...

    def model_copy(
        self, *, update: Mapping[str, Any] | None = ..., deep: bool = ...
    ) -> Partial[_M_co]:
        """A copy, as partial as the original."""
        ...


class _Unfinished(set[str]):
    """The ``model_fields_set`` of a snapshot that is not the complete model (its marker).

    A ``set`` as any other, which ``model_copy`` copies along, so a copy stays partial.
    """

    __slots__ = ()


def unfinished(fields: set[str]) -> set[str]:
    """``fields`` as the fields set of a snapshot, which :func:`is_complete` recognises."""
    return _Unfinished(fields)


def is_complete(partial: Partial[_M]) -> TypeIs[_M]:
    """Whether ``partial`` is the whole, validated model (then its fields can be read).

    ``parse_model``'s snapshots are not; its last emission, ``final()``'s answer and any
    model validated as usual are.

    >>> from pydantic import BaseModel
    >>> class Point(BaseModel):
    ...     x: int
    >>> point: Partial[Point] = Point(x=1)
    >>> if is_complete(point):
    ...     print(point.x)
    1
    """
    return not isinstance(getattr(partial, "__pydantic_fields_set__", None), _Unfinished)


@overload
def peek(partial: _M | Partial[_M], read: Callable[[_M], _T], /) -> _T | None: ...
@overload
def peek(partial: _M | Partial[_M], read: Callable[[_M], _T], default: _T, /) -> _T: ...
def peek(partial: Partial[Any], read: Callable[[Any], Any], default: Any = None, /) -> Any:
    """``read(partial)``, or ``default`` where the part it reads has not arrived yet.

    ``read`` is typed against the complete model (``lambda r: r.steps[0].title``), so the
    result has the field's type; a missing attribute, item or key (``AttributeError`` or
    ``LookupError``) gives ``default``. A string may be a prefix and a list may hold its
    first items only; a nested model returned whole may itself be partial, so read down to
    the values you show.

    >>> from pydantic import BaseModel
    >>> class Point(BaseModel):
    ...     x: int
    ...     tags: list[str]
    >>> draft = Point.model_construct(tags=[])
    >>> peek(draft, lambda p: p.x), peek(draft, lambda p: p.x, 0), peek(draft, lambda p: p.tags[0])
    (None, 0, None)
    """
    try:
        return read(partial)
    except (AttributeError, LookupError):
        return default
