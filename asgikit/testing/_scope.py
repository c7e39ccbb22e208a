"""The ASGI scopes the test clients build from an httpx request, as a server would.

Pure functions: no I/O. `http_scope` and `websocket_scope` share `connection_scope`.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx

from asgikit.types import Scope

__all__ = ["connection_scope", "http_scope", "websocket_scope"]


def connection_scope(
    request: httpx.Request,
    *,
    scope_type: str,
    scheme: str,
    headers: list[tuple[bytes, bytes]],
    root_path: str,
    client: tuple[str, int],
    state: dict[str, Any] | None,
) -> Scope:
    """The scope of ``request`` as a server would build it: path and ``root_path`` (the
    path includes it, per the ASGI spec), raw path, query, headers, client and server,
    and a copy of the lifespan ``state`` when there is one."""
    url = request.url
    path = url.path
    raw_path = url.raw_path.split(b"?", 1)[0]
    # As uvicorn --root-path does: the prefix goes in front of path and raw path, unless
    # the test asked for the full path already (the prefix as whole segments).
    if root_path and not (path == root_path or path.startswith(root_path.rstrip("/") + "/")):
        path = root_path.rstrip("/") + path
        raw_path = root_path.rstrip("/").encode("utf-8") + raw_path
    scope: Scope = {
        "type": scope_type,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": url.query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": (url.host, url.port or (443 if scheme in ("https", "wss") else 80)),
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


def http_scope(
    request: httpx.Request,
    *,
    root_path: str,
    client: tuple[str, int],
    state: dict[str, Any] | None,
) -> Scope:
    """The ASGI ``http`` scope for ``request``."""
    scope = connection_scope(
        request,
        scope_type="http",
        scheme=request.url.scheme,
        headers=[(key.lower(), value) for key, value in request.headers.raw],
        root_path=root_path,
        client=client,
        state=state,
    )
    scope["method"] = request.method
    scope["extensions"] = {}
    return scope


def websocket_scope(
    request: httpx.Request,
    *,
    root_path: str,
    client: tuple[str, int],
    state: dict[str, Any] | None,
    subprotocols: list[str] | None,
) -> Scope:
    """The ASGI ``websocket`` scope for a handshake built as an httpx ``request``
    (so the client's base URL, default headers and cookies apply)."""
    url = request.url
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    headers = [(key.lower(), value) for key, value in request.headers.raw]
    headers += [
        (b"connection", b"upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", base64.b64encode(os.urandom(16))),
    ]
    if subprotocols:
        headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("latin-1")))
    scope = connection_scope(
        request,
        scope_type="websocket",
        scheme=scheme,
        headers=headers,
        root_path=root_path,
        client=client,
        state=state,
    )
    scope["subprotocols"] = list(subprotocols or [])
    scope["extensions"] = {"websocket.http.response": {}}
    return scope
