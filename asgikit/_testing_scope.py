"""The parts of an ASGI scope that the test clients' HTTP and WebSocket scopes share."""

from __future__ import annotations

from typing import Any

import httpx

from asgikit.types import Scope


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
    scope: Scope = {
        "type": scope_type,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": root_path + path if root_path and not path.startswith(root_path) else path,
        "raw_path": url.raw_path.split(b"?", 1)[0],
        "query_string": url.query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": (url.host, url.port or (443 if scheme in ("https", "wss") else 80)),
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope
