"""The chat emulator: each request, in any dialect, plays the next queued :class:`Script`.

The dialect (:mod:`~kagura.testing.loopback._dialect`) reads the request and turns
the script into its protocol's events; :class:`ChatEmulator` sends them with the
script's timing and faults, and counts the streams. One queue serves every dialect.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from kagura.llm import metrics
from kagura.testing.loopback._dialect import Ask, BadAsk, Context, Dialect, Event
from kagura.testing.loopback._http import Connection, RecordedRequest
from kagura.testing.loopback._script import Script
from kagura.testing.loopback._stats import Counters

__all__ = ["ChatEmulator"]


class ChatEmulator:
    """``POST /v1/chat/completions``, from a queue of scripts (echo when it is empty)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._queue: deque[Script] = deque()
        self._serial = 0

    @property
    def pending(self) -> int:
        """Scripts still queued (under the counters' lock, for a consistent snapshot)."""
        return len(self._queue)

    def enqueue(self, scripts: Iterable[Script]) -> None:
        """Queue scripts for the next requests, in order."""
        with self._counters.lock:
            self._queue.extend(scripts)

    def reset(self) -> None:
        """Empty the queue and restart the completion ids."""
        with self._counters.lock:
            self._queue.clear()
            self._serial = 0

    async def answer(
        self,
        conn: Connection,
        req: RecordedRequest,
        dialect: Dialect,
        *,
        default: Script | None,
        always_include_usage: bool,
        authorized: Callable[[str | None], bool],
    ) -> bool:
        """Answer one request with the next script, or ``default``, or an echo."""
        try:
            ask: Ask = dialect.read(req)
        except BadAsk as bad:
            return await conn.send_json(bad.status, bad.body)
        if not authorized(dialect.credential(req)):
            return await conn.send_json(401, dialect.error_body(401, None, ask.model))
        with self._counters.lock:
            script = self._queue.popleft() if self._queue else default
            self._serial += 1
            serial = self._serial
        if script is None:
            script = Script.text(ask.last_user_text)
        extra = {"x-request-id": f"req_loopback_{serial}", **script.headers}
        if script.status != 200:
            if script.retry_after is not None:
                extra["retry-after"] = f"{script.retry_after:g}"
            body = dialect.error_body(script.status, script, ask.model)
            return await conn.send_json(script.status, body, headers=extra)
        ctx = Context(
            id=f"chatcmpl-loopback-{serial}",
            serial=serial,
            created=int(time.time()),
            model=ask.model,
            prompt_tokens=metrics.estimate_tokens(ask.prompt_chars),
            include_usage=ask.include_usage or always_include_usage,
        )
        if ask.stream:
            return await self._stream(conn, dialect, script, ctx, extra)
        return await self._complete(conn, dialect, script, ctx, extra)

    async def _complete(
        self,
        conn: Connection,
        dialect: Dialect,
        script: Script,
        ctx: Context,
        headers: Mapping[str, str],
    ) -> bool:
        first, body, _ = dialect.plan(script, ctx)
        await asyncio.sleep(first.delay + sum(e.delay for e in body))
        if script.drop_after is not None:
            return False
        if script.stall_after is not None:
            await asyncio.get_running_loop().create_future()
        if script.error_event_after is not None:
            return await conn.send_json(
                500, dialect.error_body(500, script, ctx.model), headers=headers
            )
        if script.malformed_after is not None:
            raw = script.malformed_data.encode()
            return await conn.send_json(200, None, headers=headers, raw=raw)
        return await conn.send_json(200, dialect.completion(script, ctx), headers=headers)

    async def _stream(
        self,
        conn: Connection,
        dialect: Dialect,
        script: Script,
        ctx: Context,
        headers: Mapping[str, str],
    ) -> bool:
        first, body, tail = dialect.plan(script, ctx)
        ended = False

        def end(outcome: str) -> None:
            # Counted before the last bytes go out, so a client that has seen the end of
            # the response also sees the counters updated.
            nonlocal ended
            if not ended:
                ended = True
                self._counters.add(streams_in_progress=-1, **{outcome: 1})

        self._counters.add(streams_started=1, streams_in_progress=1)
        try:
            head = [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("cache-control", "no-cache"),
                *headers.items(),
            ]
            await conn.write_head(200, head)
            await asyncio.sleep(first.delay)
            await conn.write_chunk(first.data)
            for sent in range(len(body) + 1):
                final = sent == len(body)
                fault = await self._fault(conn, script, sent, final=final)
                if fault == "error":
                    end("streams_completed")
                    await conn.end_chunks(dialect.error_event(script, ctx.model))
                    return True
                if fault == "drop":
                    end("streams_completed")
                    conn.writer.close()
                    return False
                if not final:
                    await asyncio.sleep(body[sent].delay)
                    await conn.write_chunk(body[sent].data)
            for event in tail[:-1]:
                await asyncio.sleep(event.delay)
                await conn.write_chunk(event.data)
            last = tail[-1] if tail else Event(0.0, b"")
            await asyncio.sleep(last.delay)
            end("streams_completed")
            await conn.end_chunks(last.data)
            return True
        except ConnectionError:
            end("streams_closed_by_client")
            return False
        finally:
            end("streams_closed_by_client" if conn.eof else "streams_aborted")

    async def _fault(self, conn: Connection, script: Script, sent: int, *, final: bool) -> str:
        """Fire the faults due after ``sent`` counted events; names a fault that ends it."""

        def due(after: int | None) -> bool:
            return after is not None and (after == sent or (final and after > sent))

        if due(script.malformed_after):
            await conn.write_chunk(f"data: {script.malformed_data}\n\n".encode())
        if due(script.error_event_after):
            return "error"
        if due(script.drop_after):
            return "drop"
        if due(script.stall_after):
            await asyncio.get_running_loop().create_future()
        return ""
