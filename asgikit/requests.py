"""HTTP connections: `HTTPConnection` (shared by `Request` and `WebSocket`) and `Request`.

Every attribute is computed from the ASGI scope when first read and then cached, so an
endpoint pays only for what it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import _unquote
from typing import TYPE_CHECKING, Any

import anyio

from asgikit import _json
from asgikit._lifespan import request_state
from asgikit._matched import MatchedRoute
from asgikit._receive import RELAY_KEY, ReceiveRelay
from asgikit.datastructures import URL, Headers, QueryParams, State
from asgikit.exceptions import ClientDisconnect, HTTPException
from asgikit.types import Message, Receive, Scope

if TYPE_CHECKING:
    from asgikit.datastructures import FormData

__all__ = ["HTTPConnection", "Request", "parse_cookie_header"]


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` request header into ``{name: value}``.

    Lenient like browsers: pairs without ``=`` count as a value with an empty name,
    quoted values are unquoted, and the last of repeated names wins.
    """
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        if "=" in chunk:
            key, value = chunk.split("=", 1)
        else:
            key, value = "", chunk
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = _unquote(value)
    return cookies


async def _no_receive() -> Message:
    raise RuntimeError("this Request was built without a receive channel")


class HTTPConnection:
    """What HTTP requests and WebSocket connections share: URL, headers, query, cookies,
    client address, path parameters and state."""

    # Lazily computed caches: class-level defaults keep construction to one store.
    _headers: Headers | None = None
    _query_params: QueryParams | None = None
    _cookies: dict[str, str] | None = None
    _url: URL | None = None
    _state: State | None = None

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    @property
    def url(self) -> URL:
        """The full request URL (scheme, host from the ``Host`` header, path, query)."""
        if self._url is None:
            self._url = URL(scope=self.scope)
        return self._url

    @property
    def base_url(self) -> URL:
        """The URL of the application root (where the top router is served), ending in ``/``."""
        scope = self.scope
        root_path: str = scope.get("app_root_path", scope.get("root_path", ""))
        base = {**scope, "path": root_path if root_path.endswith("/") else root_path + "/"}
        base["query_string"] = b""
        return URL(scope=base)

    @property
    def headers(self) -> Headers:
        """The request headers (case-insensitive, multi-valued)."""
        if self._headers is None:
            self._headers = Headers(raw=self.scope["headers"])
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        """The query string as a multi-dict."""
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def path_params(self) -> dict[str, Any]:
        """The converted path parameters of the matched route (``{}`` when none)."""
        try:
            params: dict[str, Any] = self.scope["path_params"]
        except KeyError:
            params = self.scope["path_params"] = {}
        return params

    @property
    def cookies(self) -> dict[str, str]:
        """The request cookies as ``{name: value}``."""
        if self._cookies is None:
            cookies: dict[str, str] = {}
            for name, value in self.scope["headers"]:
                if name == b"cookie":
                    cookies.update(parse_cookie_header(value.decode("latin-1")))
            self._cookies = cookies
        return self._cookies

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``, or ``None`` when the server does not say."""
        client = self.scope.get("client")
        if client is None:
            return None
        host, port = client
        return host, port

    @property
    def state(self) -> State:
        """Per-request state, seeded with what the lifespan yielded (``request.state.model``).

        A missing attribute raises `AttributeError`; when the app's lifespan never ran
        (a server without lifespan support), the error says so.
        """
        if self._state is None:
            self._state = request_state(self.scope)
        return self._state

    @property
    def route(self) -> MatchedRoute | None:
        """The matched route (``.path_format``, ``.name``, ``.methods``), as the app the
        server called names it; ``None`` when no route matched."""
        route: MatchedRoute | None = self.scope.get("route")
        return route

    @property
    def session(self) -> dict[str, Any]:
        """The session dict that `SessionMiddleware` loads from a signed cookie."""
        try:
            session: dict[str, Any] = self.scope["session"]
        except KeyError:
            raise RuntimeError(
                "request.session needs SessionMiddleware: "
                "Router(middleware=[Middleware(SessionMiddleware, secret_key=...)])"
            ) from None
        return session

    def url_for(self, name: str, /, **path_params: Any) -> URL:
        """The absolute URL of the route called ``name`` (`NoMatchFound` if none fits)."""
        router = self.scope.get("router")
        if router is None:
            raise RuntimeError("url_for needs the request to be routed by a Router")
        path: str = router.url_path_for(name, **path_params)
        base = self.base_url
        return base.replace(path=base.path.rstrip("/") + path, query="")


class Request(HTTPConnection):
    """An HTTP request: the connection attributes plus the body.

    The body is read lazily: `body()` and `json()` cache it; `stream()` yields it as it
    arrives and can be consumed once. A client that disconnects while the body is read
    raises `ClientDisconnect`, which the router handles quietly.
    """

    _body: bytes | None = None
    _json: Any = None
    _has_json = False
    _form: FormData | None = None
    _stream_consumed = False
    _is_disconnected = False
    _pending: Message | None = None

    def __init__(self, scope: Scope, receive: Receive = _no_receive) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Request needs an 'http' scope, not {scope['type']!r}")
        self.scope = scope
        self.receive = receive

    @property
    def method(self) -> str:
        """The request method, upper case (``"GET"``)."""
        method: str = self.scope["method"]
        return method

    def _content_length(self) -> int | None:
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise HTTPException(400, "Invalid Content-Length header") from None
                if length < 0:
                    raise HTTPException(400, "Invalid Content-Length header")
                return length
        return None

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body in chunks as they arrive.

        After `body()` has cached the body, yields it whole. Otherwise the body can be
        streamed once: a second `stream()` raises `RuntimeError`. Raises
        `ClientDisconnect` if the client goes away before the end of the body.
        """
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._stream_consumed:
            raise RuntimeError(
                "the request body was already streamed (by stream() or form()); "
                "call body() first to read it more than once"
            )
        self._stream_consumed = True
        while True:
            message = self._pending  # a chunk is_disconnected() picked up, if any
            if message is None:
                # A streaming response may be watching receive() for a disconnect
                # meanwhile: then the body comes through its relay, in order.
                message = await self._relayed_receive()()
            else:
                self._pending = None
            message_type = message["type"]
            if message_type == "http.request":
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
            elif message_type == "http.disconnect":
                self._is_disconnected = True
                raise ClientDisconnect("the client disconnected while sending the request body")

    def _relayed_receive(self) -> Receive:
        """This request's ``receive``, through the scope's relay when that relay reads
        this very ``receive`` (not one that middleware in between has wrapped)."""
        relay: ReceiveRelay | None = self.scope.get(RELAY_KEY)
        if relay is not None and relay.serves(self.receive):
            return relay.receive
        return self.receive

    async def body(self, max_size: int | None = None) -> bytes:
        """The whole body, read once and cached.

        With ``max_size``, a body over that many bytes raises `HTTPException(413)`:
        checked against ``Content-Length`` before reading, and against the bytes received.
        """
        if self._body is not None:
            if max_size is not None and len(self._body) > max_size:
                raise _too_large(max_size)
            return self._body
        if max_size is not None:
            length = self._content_length()
            if length is not None and length > max_size:
                raise _too_large(max_size)
        chunks: list[bytes] = []
        received = 0
        async for chunk in self.stream():
            received += len(chunk)
            if max_size is not None and received > max_size:
                raise _too_large(max_size)
            chunks.append(chunk)
        self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self, max_size: int | None = None) -> Any:
        """The body parsed as JSON (cached).

        Invalid UTF-8 or invalid JSON raises `HTTPException(400)` with a detail saying
        what is wrong and where; ``max_size`` as for `body()`.
        """
        if not self._has_json:
            body = await self.body(max_size=max_size)
            try:
                self._json = _json.decode(body)
            except _json.InvalidJSON as exc:
                raise HTTPException(400, f"Invalid JSON: {exc}") from None
            self._has_json = True
        return self._json

    async def form(
        self,
        *,
        max_files: int = 1000,
        max_fields: int = 1000,
        max_part_size: int = 1_048_576,
        max_file_size: int | None = None,
        max_size: int | None = None,
    ) -> FormData:
        """Parse an urlencoded or multipart form (cached; see "Request bodies and uploads").

        Limits exceeded raise `HTTPException(413)`, a malformed body 400, another content
        type 415. Uploaded files are closed and removed when the request ends.
        """
        if self._form is None:
            from asgikit.forms import parse_form

            self._form = await parse_form(
                self,
                max_files=max_files,
                max_fields=max_fields,
                max_part_size=max_part_size,
                max_file_size=max_file_size,
                max_size=max_size,
            )
        return self._form

    async def close(self) -> None:
        """Release what the request holds (uploaded files). The router calls it for you."""
        if self._form is not None:
            await self._form.close()

    async def is_disconnected(self) -> bool:
        """True once the client has gone away. Never blocks.

        Useful in long loops that do not stream (stream responses notice disconnects
        on their own).
        """
        if self._is_disconnected:
            return True
        if self._pending is not None:
            return False
        relay: ReceiveRelay | None = self.scope.get(RELAY_KEY)
        if relay is not None and relay.disconnected:
            self._is_disconnected = True
            return True
        receive = self._relayed_receive()
        message: Message | None = None
        with anyio.CancelScope() as cancel_scope:
            cancel_scope.cancel()
            message = await receive()
        if message is not None:
            if message["type"] == "http.disconnect":
                self._is_disconnected = True
            elif message["type"] == "http.request":
                self._pending = message  # a body chunk: keep it for stream()
        return self._is_disconnected


def _too_large(max_size: int) -> HTTPException:
    return HTTPException(413, f"Request body is larger than the limit of {max_size} bytes")
