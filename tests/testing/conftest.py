"""Fixtures for the loopback server's own tests (the top-level conftest has the same two)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kagura.testing.loopback import LoopbackServer


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    """One server for the session, on an ephemeral port."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer) -> Iterator[LoopbackServer]:
    """The session's server with an empty queue, fresh counters and default settings."""
    loopback_server.reset()
    yield loopback_server
    errors = loopback_server.errors
    loopback_server.reset()
    assert not errors, f"the loopback server failed inside: {errors!r}"
