"""The OAuth2 token endpoint (client credentials, RFC 6749 §4.4) and the bearer check."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from kagura.testing.loopback._http import Connection, RecordedRequest
from kagura.testing.loopback._stats import Counters

__all__ = ["TokenEndpoint"]


class TokenEndpoint:
    """``POST /oauth/token`` issues bearer tokens (``tok-<n>``) that :meth:`authorizes` accepts."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._tokens: dict[str, float] = {}  # token -> expiry on time.monotonic()

    def accepts(self, credential: str | None, api_keys: frozenset[str] | None) -> bool:
        """Whether ``credential`` is a key of ``api_keys`` or a live token (always, if
        ``api_keys`` is ``None``)."""
        if api_keys is None:
            return True
        if not credential:
            return False
        with self._counters.lock:
            expiry = self._tokens.get(credential)
        return credential in api_keys or (expiry is not None and time.monotonic() < expiry)

    def revoke(self) -> None:
        """Make every issued token invalid (as if expired)."""
        with self._counters.lock:
            self._tokens.clear()

    async def answer(
        self,
        conn: Connection,
        req: RecordedRequest,
        *,
        clients: Mapping[str, str],
        expires_in: int,
        delay: float,
        fail_status: int | None,
    ) -> bool:
        """Answer a token request: credentials from the form or HTTP Basic (RFC 6749 §2.3.1)."""
        serial = self._counters.add(token_requests=1).token_requests
        if delay:
            await asyncio.sleep(delay)
        if fail_status is not None:
            body = {"error": "server_error", "error_description": "scripted failure"}
            return await conn.send_json(fail_status, body)
        form = req.form
        client_id, secret = form.get("client_id"), form.get("client_secret")
        scheme, _, credentials = req.headers.get("authorization", "").partition(" ")
        basic = scheme.lower() == "basic"
        if basic:
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, secret = unquote_plus(user), unquote_plus(password)
        grant = form.get("grant_type")
        if grant is None:
            return await conn.send_json(400, {"error": "invalid_request"})
        if grant != "client_credentials":
            return await conn.send_json(400, {"error": "unsupported_grant_type"})
        if client_id is None or secret is None or clients.get(client_id) != secret:
            challenge = {"www-authenticate": 'Basic realm="loopback"'} if basic else {}
            return await conn.send_json(401, {"error": "invalid_client"}, headers=challenge)
        token = f"tok-{serial}"
        with self._counters.lock:
            self._tokens[token] = time.monotonic() + expires_in
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return await conn.send_json(200, answer, headers={"cache-control": "no-store"})
