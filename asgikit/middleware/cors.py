"""CORSMiddleware: Cross-Origin Resource Sharing per the Fetch standard.

The middleware answers preflight requests itself and adds the CORS response headers to
every other request that carries an ``Origin``. The policy (which origins, methods and
headers) is compiled once, when the middleware is built; per request it is a set lookup
or one regex match, plus a header list copied on ``http.response.start``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from asgikit.datastructures import encode_header
from asgikit.middleware._answers import send_error
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORSMiddleware", "parse_header_list"]

# Request headers a browser may send cross-origin without asking (Fetch: CORS-safelisted).
_SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
_ORIGIN_CACHE_SIZE = 1024

_CORS_RESPONSE_HEADERS = frozenset(
    {
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-expose-headers",
    }
)


def parse_header_list(value: str) -> list[str]:
    """The items of a comma-separated header value, stripped, empty items dropped.

    >>> parse_header_list(" X-Token, content-type,,")
    ['X-Token', 'content-type']
    """
    return [item.strip() for item in value.split(",") if item.strip()]


def _as_items(value: str | Iterable[str], option: str) -> list[str]:
    """An option that takes several items; a bare string is a comma-separated list."""
    if isinstance(value, str):
        return parse_header_list(value)
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{option} entries must be str, not {type(item).__name__}")
    return [item.strip() for item in items]


class CORSMiddleware:
    """Answer CORS preflights and add CORS headers to cross-origin responses.

    Options:

    - ``allow_origins``: exact origins (``"https://app.example.com"``) or ``"*"`` for any.
    - ``allow_origin_regex``: origins that fully match this regex are allowed too.
    - ``allow_methods``: methods a preflight may ask for (``"*"`` for any).
    - ``allow_headers``: request headers a preflight may ask for (``"*"`` for any); the
      CORS-safelisted ``Accept``, ``Accept-Language``, ``Content-Language`` and
      ``Content-Type`` are always allowed.
    - ``allow_credentials``: send ``Access-Control-Allow-Credentials: true`` to the
      origins listed by name or matched by ``allow_origin_regex``: their own origin is
      echoed, never a literal ``*``. An arbitrary origin is never echoed with
      credentials: under ``"*"`` other origins get ``Access-Control-Allow-Origin: *``
      without the credentials header (so browsers allow only uncredentialed calls).
    - ``expose_headers``: response headers the browser's script may read.
    - ``max_age``: seconds a browser may cache a preflight answer.

    Behaviour:

    - A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
      answered here: ``200`` with the allow headers, or ``400`` with a JSON ``detail``
      and no allow headers when the origin, method or a header is not allowed.
    - Other requests with an ``Origin`` go to the app; an allowed origin gets
      ``Access-Control-Allow-Origin`` (and the credentials and expose headers).
    - ``Vary: Origin`` is added whenever the answer depends on the origin (everything
      except "any origin, no credentials", which answers ``*``).
    - Requests without ``Origin``, WebSocket and ``lifespan`` scopes pass through.

    >>> app = Router(routes, middleware=[Middleware(
    ...     CORSMiddleware, allow_origins=["https://app.example.com"],
    ...     allow_methods=["GET", "POST"], allow_headers=["Authorization"])])
    """

    __slots__ = (
        "allow_all_headers",
        "allow_all_methods",
        "allow_all_origins",
        "allow_credentials",
        "allow_headers",
        "allow_methods",
        "allow_origin_regex",
        "allow_origins",
        "any_origin_headers",
        "app",
        "origin_dependent",
        "origin_headers",
        "preflight_headers",
        "simple_headers",
    )

    def __init__(
        self,
        app: ASGIApp,
        allow_origins: str | Iterable[str] = (),
        allow_origin_regex: str | re.Pattern[str] | None = None,
        allow_methods: str | Iterable[str] = ("GET",),
        allow_headers: str | Iterable[str] = (),
        allow_credentials: bool = False,
        expose_headers: str | Iterable[str] = (),
        max_age: int = 600,
    ) -> None:
        origins = _as_items(allow_origins, "allow_origins")
        methods = [method.upper() for method in _as_items(allow_methods, "allow_methods")]
        headers = [header.lower() for header in _as_items(allow_headers, "allow_headers")]
        exposed = _as_items(expose_headers, "expose_headers")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, not {max_age}")
        self.app = app
        self.allow_all_origins = "*" in origins
        self.allow_origins = frozenset(origin for origin in origins if origin != "*")
        self.allow_origin_regex = (
            re.compile(allow_origin_regex)
            if isinstance(allow_origin_regex, str)
            else allow_origin_regex
        )
        self.allow_all_methods = "*" in methods
        self.allow_methods = frozenset(methods)
        self.allow_all_headers = "*" in headers
        self.allow_headers = frozenset(headers) | _SAFELISTED_HEADERS
        self.allow_credentials = allow_credentials
        # "*" is only correct when it does not depend on who asks.
        self.origin_dependent = not self.allow_all_origins or allow_credentials

        simple: list[tuple[bytes, bytes]] = []
        if allow_credentials:
            simple.append((b"access-control-allow-credentials", b"true"))
        if exposed:
            simple.append(encode_header("access-control-expose-headers", ", ".join(exposed)))
        self.simple_headers = simple
        # "*" never goes with the credentials header.
        self.any_origin_headers = [
            (b"access-control-allow-origin", b"*"),
            *(pair for pair in simple if pair[0] != b"access-control-allow-credentials"),
        ]
        # Origin header value -> headers to add; bounded so hostile origins cannot grow it.
        self.origin_headers: dict[bytes, list[tuple[bytes, bytes]]] = {}

        preflight: list[tuple[bytes, bytes]] = []
        if not self.allow_all_methods:
            listed = ", ".join(sorted(self.allow_methods))
            preflight.append(encode_header("access-control-allow-methods", listed))
        if not self.allow_all_headers:
            listed = ", ".join(sorted(self.allow_headers))
            preflight.append(encode_header("access-control-allow-headers", listed))
        preflight.append((b"access-control-max-age", str(int(max_age)).encode("latin-1")))
        self.preflight_headers = preflight

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether ``origin`` (an ``Origin`` header value) is allowed by this policy.

        >>> CORSMiddleware(app, allow_origin_regex=r"https://.*\\.example\\.com"
        ...                ).is_allowed_origin("https://api.example.com")
        True
        """
        return self.allow_all_origins or self._named(origin)

    def _named(self, origin: str) -> bool:
        """Allowed by name or by the regex, not merely by ``"*"``."""
        if origin in self.allow_origins:
            return True
        regex = self.allow_origin_regex
        return regex is not None and regex.fullmatch(origin) is not None

    def _allow_origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """``Access-Control-Allow-Origin`` for an allowed ``origin``, with the credentials
        header when it applies (never with ``*``, never for an origin allowed only by ``*``)."""
        if not self.origin_dependent or not self._named(origin):
            return [(b"access-control-allow-origin", b"*")]
        headers = [encode_header("access-control-allow-origin", origin)]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        request_method = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
        if origin is None:
            if self.origin_dependent:
                await self.app(scope, receive, _CORSSender(send, [], True))
            else:
                await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            origin_text = origin.decode("latin-1")
            await self._preflight(scope, send, origin_text, request_method.decode("latin-1"))
            return
        added = self.origin_headers.get(origin)
        if added is None:
            added = self._headers_for_origin(origin)
        await self.app(scope, receive, _CORSSender(send, added, self.origin_dependent))

    def _headers_for_origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """The headers an actual request from ``origin`` gets (cached: origins repeat)."""
        origin_text = origin.decode("latin-1")
        if not self.origin_dependent or (self.allow_all_origins and not self._named(origin_text)):
            added = self.any_origin_headers
        elif self._named(origin_text):
            added = [encode_header("access-control-allow-origin", origin_text)]
            added += self.simple_headers
        else:
            added = []
        if len(self.origin_headers) < _ORIGIN_CACHE_SIZE:
            self.origin_headers[origin] = added
        return added

    async def _preflight(self, scope: Scope, send: Send, origin: str, method: str) -> None:
        """Answer a preflight: ``200`` with the allow headers, or ``400`` with why not."""
        requested_headers: list[str] = []
        for name, value in scope["headers"]:
            if name == b"access-control-request-headers":
                requested_headers += parse_header_list(value.decode("latin-1").lower())
        problems = []
        if not self.is_allowed_origin(origin):
            problems.append(f"origin {origin!r} is not allowed")
        if not self.allow_all_methods and method.upper() not in self.allow_methods:
            problems.append(f"method {method!r} is not allowed")
        if not self.allow_all_headers:
            refused = [header for header in requested_headers if header not in self.allow_headers]
            if refused:
                problems.append(f"headers {', '.join(refused)} are not allowed")
        if problems:
            detail = "Disallowed CORS preflight: " + "; ".join(problems)
            await send_error(scope, _CORSSender(send, [], self.origin_dependent), 400, detail)
            return
        headers = [*self._allow_origin_headers(origin), *self.preflight_headers]
        if self.allow_all_methods:
            headers.append(encode_header("access-control-allow-methods", method))
        if self.allow_all_headers and requested_headers:
            # Echo the request: with credentials a literal "*" would not mean "any".
            listed = ", ".join(requested_headers)
            headers.append(encode_header("access-control-allow-headers", listed))
        if self.origin_dependent:
            headers.append((b"vary", b"Origin"))
        headers += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"OK"})


class _CORSSender:
    """The ``send`` seen by the app: adds the CORS headers (and ``Vary: Origin``) to
    ``http.response.start``, then gets out of the way."""

    __slots__ = ("added", "send", "vary")

    def __init__(self, send: Send, added: list[tuple[bytes, bytes]], vary: bool) -> None:
        self.send = send
        self.added = added
        self.vary = vary

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
            added = self.added
            if added:
                # Ours replace any CORS headers the app set itself.
                headers = [pair for pair in headers if pair[0] not in _CORS_RESPONSE_HEADERS]
                headers += added
            if self.vary:
                _add_vary_origin(headers)
            message = {**message, "headers": headers}
        await self.send(message)


def _add_vary_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Origin`` to the ``Vary`` header of ``headers`` in place (once)."""
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            listed = {item.strip().lower() for item in value.split(b",")}
            if b"*" in listed or b"origin" in listed:
                return
            headers[index] = (name, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))
