"""What the server counts: :class:`LoopbackStats`, and the lock its parts share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

__all__ = ["Counters", "LoopbackStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopbackStats:
    """A snapshot of a :class:`~kagura.testing.loopback.LoopbackServer`'s counters.

    Streams are the SSE responses. ``streams_started`` counts them and
    ``streams_in_progress`` those not yet ended; each one that ended counts once in
    ``streams_completed`` (the server finished it as scripted, scripted faults
    included), ``streams_closed_by_client`` (the client left first: how a test sees that
    a ``break`` closed the HTTP response) or ``streams_aborted`` (cut by ``reset()`` or
    ``stop()``). ``connections_opened`` counts the TCP connections accepted and
    ``connections_open`` those open now, idle keep-alive ones included.
    ``token_requests`` counts the requests to ``/oauth/token``; ``scripts_pending`` is
    the number of scripts still queued. ``reset()`` zeroes every count but the two that
    say what is open now.

    >>> LoopbackStats(streams_started=1).streams_completed
    0
    """

    streams_in_progress: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_closed_by_client: int = 0
    streams_aborted: int = 0
    connections_opened: int = 0
    connections_open: int = 0
    token_requests: int = 0
    scripts_pending: int = 0


class Counters:
    """The server's counts, changed by its parts from the server's thread, read from any.

    ``lock`` guards them and the parts' own state (the script queue, the tokens,
    the recorded requests); ``idle``, on the same lock, is notified on every change.
    ``now.scripts_pending`` stays 0: the script queue has that count.
    """

    __slots__ = ("idle", "lock", "now")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.now = LoopbackStats()

    def add(self, **deltas: int) -> LoopbackStats:
        """Add ``deltas`` to the counts they name; returns the new counts.

        >>> Counters().add(streams_started=1, streams_in_progress=1).streams_in_progress
        1
        """
        with self.lock:
            now = self.now
            self.now = replace(now, **{name: getattr(now, name) + d for name, d in deltas.items()})
            self.idle.notify_all()
            return self.now

    def reset(self) -> None:
        """Zero the counts, except those of streams and connections open now."""
        with self.lock:
            now = self.now
            self.now = LoopbackStats(
                streams_in_progress=now.streams_in_progress, connections_open=now.connections_open
            )
