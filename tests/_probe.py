"""The probe request: how a test proves that something did *not* reach the loopback server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

PROBE = "probe: a request that proves the server has seen everything sent before it"

Probe = Callable[[], Awaitable[list[str]]]
"""The ``probe`` fixture: send the probe, wait for its answer, return every request's text."""
