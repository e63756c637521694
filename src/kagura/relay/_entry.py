"""How relay entries are written and read back: ids, checks, and a compact encoding.

A stream's events have ids ``"<ms>-<n>"``: ``ms`` is the time its producer started (the
same for every event of the stream) and ``n`` counts its events, ``0`` being the start
marker. A stored entry holds the events of one batch and carries the id of its last
event, so a Redis entry id is an event id too and ``XRANGE``/``XREAD`` from any event id
return the rest.

One event is one string, its kind in the first character::

    s<text>      a str item              t<text>   TextDelta      r<text>   ReasoningDelta
    c[i,id,n,a]  ToolCallDelta           u[p,c,t,e]  Usage        f<json>   Finish reason
    m<json>      a pydantic model        j<json>   another JSON value
    M[...]       StreamMetrics (its durations, counts, model, usage; not its clock)
    S            the start marker        E         the end        X<json>   an error

and an entry is the JSON array of its events' strings.

>>> payload = pack([encode_item("Hi"), encode_item(TextDelta(" there")), END])
>>> payload
b'["sHi","t there","E"]'
>>> [decode_event(e) for e in unpack(payload)[:2]]
['Hi', TextDelta(text=' there')]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any, Final, cast

import pydantic_core
from pydantic import BaseModel, ValidationError

from kagura import errors
from kagura._redact import redact
from kagura.errors import (
    ConfigError,
    KaguraError,
    LLMError,
    ParseError,
    RelayError,
    StreamError,
)
from kagura.events import Finish, ReasoningDelta, TextDelta, ToolCall, ToolCallDelta, Usage
from kagura.llm.metrics import StreamMetrics

__all__ = [
    "END",
    "START",
    "Cursor",
    "check_owner",
    "check_stream_id",
    "decode_error",
    "decode_event",
    "encode_error",
    "encode_item",
    "event_id",
    "new_stream_id",
    "owner_digest",
    "pack",
    "parse_after",
    "unpack",
]

START: Final = "S"
END: Final = "E"
ERROR: Final = "X"
TERMINAL: Final = frozenset("EX")

_STREAM_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_EVENT_ID: Final = re.compile(r"(\d{1,20})-(\d{1,20})")
_MAX_ID_PART: Final = 2**64 - 1
_MAX_OWNER: Final = 1024
_NO_OWNER: Final = "-"

Cursor = tuple[int, int]
"""A parsed event id: (ms, n)."""


def new_stream_id() -> str:
    """A new stream id: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def check_stream_id(stream_id: object) -> str:
    """``stream_id`` if it is 1 to 128 of ``A-Z a-z 0-9 _ -``, else :class:`ConfigError`."""
    if not isinstance(stream_id, str) or _STREAM_ID.fullmatch(stream_id) is None:
        raise ConfigError("a relay stream id is 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")
    return stream_id


def check_owner(owner: object) -> str | None:
    """``owner`` if it is None or a non-empty str of at most 1024 characters."""
    if owner is None:
        return None
    if not isinstance(owner, str) or not 0 < len(owner) <= _MAX_OWNER:
        raise ConfigError(f"a relay owner is a non-empty str of at most {_MAX_OWNER} characters")
    return owner


def owner_digest(owner: str | None) -> str:
    """What is stored for ``owner``: a SHA-256 digest (``"-"`` for no owner), never the value."""
    if owner is None:
        return _NO_OWNER
    return hashlib.sha256(b"kagura.relay.owner\0" + owner.encode()).hexdigest()


def same_owner(stored: str, owner: str | None) -> bool:
    """Whether ``owner`` is the one whose digest is ``stored`` (in constant time)."""
    return hmac.compare_digest(stored.encode(), owner_digest(owner).encode())


def parse_after(after: object) -> Cursor | None:
    """An ``after`` argument as a cursor; :class:`ConfigError` if it is not an event id."""
    if after is None:
        return None
    match = _EVENT_ID.fullmatch(after) if isinstance(after, str) else None
    if match is None or max(int(match[1]), int(match[2])) > _MAX_ID_PART:
        raise ConfigError("`after` must be an event id of the stream, like '1718000000000-42'")
    return int(match[1]), int(match[2])


def event_id(ms: int, n: int) -> str:
    """The id of the ``n``-th event of the stream started at ``ms``."""
    return f"{ms}-{n}"


# -- events ---------------------------------------------------------------------------------
def _json(value: object) -> str:
    return pydantic_core.to_json(value).decode()


def encode_item(item: object) -> str:
    """One item as its event string; :class:`TypeError` if it cannot be stored."""
    if isinstance(item, str):
        return "s" + item
    if isinstance(item, TextDelta):
        return "t" + item.text
    if isinstance(item, ReasoningDelta):
        return "r" + item.text
    if isinstance(item, ToolCallDelta):
        return "c" + _json([item.index, item.id, item.name, item.arguments])
    if isinstance(item, Usage):
        return "u" + _json(
            [item.prompt_tokens, item.completion_tokens, item.total_tokens, item.estimated]
        )
    if isinstance(item, Finish):
        return "f" + _json(item.reason)
    if isinstance(item, StreamMetrics):
        return "M" + _metrics_json(item)
    if isinstance(item, BaseModel):
        return "m" + item.model_dump_json()
    try:
        return "j" + _json(item)
    except pydantic_core.PydanticSerializationError as exc:
        raise TypeError(f"a relay cannot store an item of type {type(item).__name__}") from exc


def decode_event(event: str, model: type[BaseModel] | None = None) -> Any:
    """The item an event string stands for (a model's JSON as a dict, or ``model``)."""
    kind, body = event[:1], event[1:]
    if kind == "s":
        return body
    if kind == "t":
        return TextDelta(body)
    if kind == "r":
        return ReasoningDelta(body)
    if kind == "c":
        index, call_id, name, arguments = json.loads(body)
        return ToolCallDelta(index, call_id, name, arguments)
    if kind == "u":
        return _usage(json.loads(body))
    if kind == "f":
        return Finish(json.loads(body))
    if kind == "M":
        return _metrics(json.loads(body))
    if kind == "m" and model is not None:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise ParseError(
                f"a relayed model is not a valid {model.__name__}",
                raw_text=body,
                errors=exc.errors(include_url=False),
            ) from None
    if kind in ("m", "j"):
        return json.loads(body)
    raise RelayError(f"not a relay event: {event[:20]!r}")


def _metrics_json(metrics: StreamMetrics) -> str:
    """A stream's metrics without its clock: times become seconds from its start."""
    usage = metrics.usage
    return _json(
        [
            metrics.ttft_s,
            metrics.duration_s,
            metrics.chunks,
            metrics.chars,
            metrics.reasoning_chars,
            None
            if usage is None
            else [
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens,
                usage.estimated,
            ],
            metrics.finish_reason,
            [[call.id, call.name, call.arguments] for call in metrics.tool_calls],
            metrics.model,
            metrics.attempts,
        ]
    )


def _metrics(raw: Sequence[Any]) -> StreamMetrics:
    """Metrics read back: the start is 0.0, so ``ttft_s`` and ``duration_s`` are as sent.

    >>> from kagura.llm.metrics import StreamMetrics
    >>> sent = StreamMetrics(started_at=10.0, first_token_at=10.25, ended_at=12.0, chars=40)
    >>> got = decode_event(encode_item(sent))
    >>> got.ttft_s, got.duration_s, got.tokens_per_s
    (0.25, 2.0, 5.714285714285714)
    """
    ttft, duration, chunks, chars, reasoning, usage, reason, calls, model, attempts = raw
    return StreamMetrics(
        started_at=None if ttft is None and duration is None else 0.0,
        first_token_at=None if ttft is None else float(ttft),
        ended_at=None if duration is None else float(duration),
        chunks=int(chunks),
        chars=int(chars),
        reasoning_chars=int(reasoning),
        usage=_usage(usage),
        finish_reason=None if reason is None else str(reason),
        tool_calls=[ToolCall(str(i), str(n), str(a)) for i, n, a in calls],
        model=None if model is None else str(model),
        attempts=int(attempts),
    )


def _usage(raw: Sequence[Any] | None) -> Usage | None:
    if raw is None:
        return None
    prompt, completion, total, estimated = raw
    return Usage(int(prompt), int(completion), int(total), bool(estimated))


def pack(events: Sequence[str]) -> bytes:
    """An entry: the JSON array of its events."""
    return pydantic_core.to_json(list(events))


def unpack(payload: bytes | str) -> tuple[str, ...]:
    """The events of an entry."""
    return tuple(cast(list[str], json.loads(payload)))


# -- errors ---------------------------------------------------------------------------------
_SIMPLE = (str, int, float, bool, type(None))
_ATTRIBUTE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_OWN_ATTRIBUTES: Final = frozenset(
    {"message", "model", "status_code", "partial_text", "usage", "tool_calls"}
)


def encode_error(exc: BaseException, *, text: str, usage: Usage | None) -> str:
    """The error event for ``exc``, with the text and usage the producer relayed.

    kagura's own errors keep their class, their (redacted) message and their simple
    attributes; any other exception becomes a :class:`~kagura.errors.StreamError` that
    names only its type.
    """
    cls = type(exc)
    record: dict[str, Any]
    own = isinstance(exc, KaguraError) and getattr(errors, cls.__name__, None) is cls
    if own:
        message = exc.message if isinstance(exc, LLMError) else str(exc)
        record = {"type": cls.__name__, "message": redact(message)}
    else:
        record = {
            "type": "StreamError",
            "message": f"the stream's producer failed ({cls.__name__})",
        }
    if isinstance(exc, LLMError):
        record["model"] = exc.model
        record["status_code"] = exc.status_code
        text = exc.partial_text or text
        usage = exc.usage or usage
    record["partial_text"] = text
    record["usage"] = (
        None
        if usage is None
        else [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.estimated]
    )
    if isinstance(exc, errors.ToolLoopError):
        record["tool_calls"] = [[c.id, c.name, c.arguments] for c in exc.tool_calls]
    if own:
        attributes = {
            key: redact(value) if isinstance(value, str) else value
            for key, value in vars(exc).items()
            if key not in _OWN_ATTRIBUTES
            and _ATTRIBUTE.fullmatch(key)
            and isinstance(value, _SIMPLE)
        }
        if isinstance(exc, ParseError):
            attributes["errors"] = json.loads(pydantic_core.to_json(exc.errors, fallback=str))
        record["attributes"] = attributes
    return ERROR + _json(record)


def decode_error(event: str) -> KaguraError:
    """The exception an error event stands for: the same kagura class, else StreamError."""
    record: dict[str, Any] = json.loads(event[1:])
    found: object = getattr(errors, str(record.get("type")), None)
    cls = found if isinstance(found, type) and issubclass(found, KaguraError) else StreamError
    message = str(record.get("message", ""))
    usage = _usage(record.get("usage"))
    error: KaguraError = cls.__new__(cls)
    if isinstance(error, LLMError):
        LLMError.__init__(
            error,
            message,
            model=record.get("model"),
            status_code=record.get("status_code"),
            partial_text=str(record.get("partial_text", "")),
            usage=usage,
        )
    else:
        Exception.__init__(error, message)
    for kind, defaults in _DEFAULTS:  # what each class's __init__ sets, for a short record
        if isinstance(error, kind):
            for key, value in defaults.items():
                setattr(error, key, value)
    for key, value in dict(record.get("attributes") or {}).items():
        if _ATTRIBUTE.fullmatch(str(key)) and key != "args":  # plain data attributes only
            setattr(error, str(key), value)
    if isinstance(error, errors.ToolLoopError):
        calls: list[list[Any]] = record.get("tool_calls") or []
        error.tool_calls = [ToolCall(*call) for call in calls]
    return error


_DEFAULTS: Final[tuple[tuple[type[KaguraError], dict[str, Any]], ...]] = (
    (ParseError, {"raw_text": "", "errors": []}),
    (errors.MissingAPIKeyError, {"env_var": None}),
    (errors.ToolLoopError, {"rounds": 0}),
    (errors.EntriesTrimmed, {"resume_after": ""}),
)
