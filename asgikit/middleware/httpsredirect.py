"""HTTPSRedirectMiddleware: send plain-text traffic to the encrypted scheme."""

from __future__ import annotations

from asgikit.datastructures import INVALID_HOST, plain_host_header
from asgikit.middleware._answers import request_target, send_error, send_redirect
from asgikit.types import ASGIApp, Receive, Scope, Send

__all__ = ["HTTPSRedirectMiddleware", "https_url"]

_SECURE_SCHEMES = {"http": "https", "ws": "wss"}


def https_url(scope: Scope) -> str:
    """The URL of ``scope`` with ``http`` turned into ``https`` and ``ws`` into ``wss``.

    Path and query are kept as received (percent-encoded); the default ports 80 and 443
    are dropped, any other port is kept. The host comes from the ``Host`` header, else
    from ``scope["server"]``. `ValueError` if the ``Host`` header is not a plain
    ``host[:port]`` (``evil.com/x?`` would move the path into the query), or if there is
    neither a ``Host`` header nor a server address.

    >>> https_url({"type": "http", "scheme": "http", "path": "/a", "query_string": b"q=1",
    ...            "headers": [(b"host", b"example.com:80")]})
    'https://example.com/a?q=1'
    """
    scheme = _scheme(scope)
    secure_scheme = _SECURE_SCHEMES.get(scheme, scheme)
    header = plain_host_header(scope)
    if header is INVALID_HOST:
        raise ValueError("Invalid host header: not a plain host[:port]")
    if header is not None:
        host, port = _split_host(header)
    elif scope.get("server"):
        server_host, server_port = scope["server"]
        host = f"[{server_host}]" if ":" in server_host else server_host
        port = None if server_port is None else str(server_port)
    else:
        raise ValueError("Missing Host header (and no server address to redirect to)")
    netloc = host if port in (None, "", "80", "443") else f"{host}:{port}"
    return f"{secure_scheme}://{netloc}{request_target(scope)}"


def _scheme(scope: Scope) -> str:
    """The scope's scheme; ASGI makes it optional, defaulting to ``http`` / ``ws``."""
    scheme: str | None = scope.get("scheme")
    if scheme:
        return scheme
    return "ws" if scope["type"] == "websocket" else "http"


def _split_host(host: str) -> tuple[str, str | None]:
    """``("example.com", "8080")`` from ``"example.com:8080"``; IPv6 brackets are kept.
    ``host`` is a plain ``host[:port]`` (`plain_host_header` checked it)."""
    if host.endswith("]"):  # a bracketed IPv6 address without a port
        return host, None
    name, colon, port = host.rpartition(":")
    return (name, port) if colon else (host, None)


class HTTPSRedirectMiddleware:
    """Redirect ``http`` requests to ``https`` and ``ws`` handshakes to ``wss``.

    The redirect keeps path and query and drops the default ports (80, 443). It is a
    ``307 Temporary Redirect`` (the method and body are kept); ``permanent=True`` sends
    ``308 Permanent Redirect`` instead, which browsers cache: use it only once the site
    is meant to stay HTTPS-only. A ``ws`` handshake is redirected through the
    ``websocket.http.response`` extension when the server offers it, and otherwise
    refused (closed before acceptance). Requests already on ``https``/``wss`` and the
    ``lifespan`` scope pass through. A ``Host`` header that is not a plain
    ``host[:port]`` (``evil.com/x?``, ``a@b``, ``[::1``) gets a ``400``, never a
    redirect built from it.

    Behind a TLS-terminating proxy, let the server apply ``X-Forwarded-Proto`` first
    (``uvicorn --proxy-headers``), or every request looks like ``http``.

    >>> app = Router(routes, middleware=[Middleware(HTTPSRedirectMiddleware)])
    """

    __slots__ = ("app", "status_code")

    def __init__(self, app: ASGIApp, permanent: bool = False) -> None:
        self.app = app
        self.status_code = 308 if permanent else 307

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _scheme(scope) in _SECURE_SCHEMES:
            try:
                location = https_url(scope)
            except ValueError as exc:  # no usable host to redirect to (RFC 9112: a 400)
                await send_error(scope, send, 400, str(exc))
                return
            await send_redirect(scope, send, location, self.status_code)
            return
        await self.app(scope, receive, send)
