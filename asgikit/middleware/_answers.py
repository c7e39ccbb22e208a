"""Answers a middleware sends by itself, for HTTP and WebSocket scopes alike.

An HTTP scope gets an ordinary response. A WebSocket handshake gets the same response
through the ``websocket.http.response`` extension when the server offers it, and
otherwise a ``websocket.close`` before acceptance (the server answers ``403``).
"""

from __future__ import annotations

import json

from asgikit.datastructures import encode_header, encoded_path
from asgikit.types import Scope, Send

__all__ = ["host_header", "request_target", "send_error", "send_redirect"]

# RFC 6455 policy violation: the closest close code to "this request is not allowed".
_POLICY_VIOLATION = 1008


async def _send_answer(
    scope: Scope,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    reason: str,
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode("latin-1"))]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    # A close reason is limited to 123 bytes of UTF-8.
    reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
    await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": reason})


async def send_error(scope: Scope, send: Send, status: int, detail: str) -> None:
    """Answer ``status`` with asgikit's error body ``{"detail": detail}``."""
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode("utf-8")
    headers = [(b"content-type", b"application/json")]
    await _send_answer(scope, send, status, headers, body, detail)


async def send_redirect(scope: Scope, send: Send, location: str, status: int) -> None:
    """Answer ``status`` (a 3xx) with ``Location: location`` and an empty body.

    Raises `ValueError` if ``location`` contains CR, LF or NUL.
    """
    headers = [encode_header("location", location)]
    await _send_answer(scope, send, status, headers, b"", f"Redirect to {location}")


def request_target(scope: Scope) -> str:
    """The path and query the client asked for, still percent-encoded (``/a%20b?q=1``)."""
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else encoded_path(scope["path"])
    query_string: bytes = scope.get("query_string", b"")
    if query_string:
        return f"{path}?{query_string.decode('latin-1')}"
    return path


def host_header(scope: Scope) -> str | None:
    """The ``Host`` header of ``scope`` (``None`` when the request has none)."""
    for name, value in scope["headers"]:
        if name == b"host":
            return str(value.decode("latin-1"))
    return None
