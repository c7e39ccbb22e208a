"""HTTP connections: `HTTPConnection` (shared by `Request` and `WebSocket`) and `Request`.

Every attribute is computed from the ASGI scope when first read and then cached, so an
endpoint pays only for what it uses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from asgikit import _json
from asgikit._http import body_too_large, content_length, framed_length
from asgikit._http import parse_cookie_header as parse_cookie_header  # its old home
from asgikit._lifespan import request_state
from asgikit._matched import MatchedRoute
from asgikit._receive import READING_KEY, RELAY_KEY, ReceiveRelay, receive_if_ready
from asgikit.datastructures import URL, FormData, Headers, QueryParams, State
from asgikit.exceptions import ClientDisconnect, HTTPException
from asgikit.forms import DEFAULT_LIMITS, MultipartPart, iter_parts, parse_form
from asgikit.forms._limits import form_limits
from asgikit.types import Message, Receive, Scope

__all__ = ["HTTPConnection", "Request"]


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
    _body_complete = False  # the last body message has been received
    # Body messages is_disconnected() received before stream() asked for them.
    _pending: deque[Message] | None = None
    _pending_bytes = 0
    # Whether the body ends once Content-Length bytes have come (see _claim_stream),
    # and how many are still to come (None: the header not read yet).
    _until_length = False
    _length_left: int | None = None

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
        self._claim_stream()
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                return
            if chunk:
                yield chunk

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrives (maybe empty), None after the last.
        Raises `ClientDisconnect` if the client goes away first. (`stream()` yields
        these; `body()` reads them directly: no async generator per request.)"""
        pending = self._pending
        if pending:  # chunks is_disconnected() picked up come first, in order
            message = pending.popleft()
            self._pending_bytes -= len(message.get("body", b""))
        elif self._body_complete:  # the last message was handed out
            return None
        elif self._is_disconnected:
            raise ClientDisconnect("the client disconnected while sending the request body")
        else:
            # A streaming response may be watching receive() for a disconnect meanwhile
            # (even one started after this stream): then the body comes through its
            # relay, in order.
            scope = self.scope
            scope[READING_KEY] = True  # (a watcher started now could take this message)
            try:
                message = await self._relayed_receive()()
            finally:
                scope.pop(READING_KEY, None)
            if message["type"] == "http.request" and not message.get("more_body", False):
                self._body_complete = True
        message_type = message["type"]
        if message_type == "http.request":
            chunk: bytes = message.get("body", b"")
            if self._until_length and not self._body_complete:
                self._count_towards_length(len(chunk))
            return chunk
        if message_type == "http.disconnect":
            self._is_disconnected = True
            raise ClientDisconnect("the client disconnected while sending the request body")
        return b""  # not a body message: nothing

    def _claim_stream(self, *, until_length: bool = True) -> None:
        """The body is read from the server once: the first reader claims it.

        With ``until_length``, the body ends once ``Content-Length`` bytes have come, as
        the server frames it (`framed_length`: not when a ``Transfer-Encoding`` frames
        it instead): a server that then sends an empty last message (granian) is not
        waited for, one ``receive()`` less per request. Without (a size limit that must
        count what really arrives), it ends at the server's last message.
        """
        if self._stream_consumed:
            raise RuntimeError(
                "the request body was already streamed (by stream(), form() or parts()): "
                "call body() first to read it more than once"
            )
        self._stream_consumed = True
        self._until_length = until_length

    def _count_towards_length(self, size: int) -> None:
        """A body message that says more is coming brought ``size`` bytes: once the
        announced length is all here, the body is complete (see `_claim_stream`). The
        header is read at the first such message: a body in one message never pays."""
        remaining = self._length_left
        if remaining is None:
            remaining = framed_length(self.scope["headers"])
            if remaining is None:  # no Content-Length, or a Transfer-Encoding frames it
                self._until_length = False
                return
        remaining -= size
        if remaining > 0:
            self._length_left = remaining
            return
        self._until_length = False  # all here (or more: then the header was wrong)
        if remaining == 0:
            self._body_complete = True

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
                raise body_too_large(max_size)
            return self._body
        if max_size is not None:
            length = content_length(self.scope["headers"])
            if length is not None and length > max_size:
                raise body_too_large(max_size)
        self._claim_stream(until_length=max_size is None)
        chunks: list[bytes] = []
        received = 0
        while (chunk := await self._next_chunk()) is not None:
            if chunk:
                received += len(chunk)
                if max_size is not None and received > max_size:
                    raise body_too_large(max_size)
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
        max_files: int = DEFAULT_LIMITS.max_files,
        max_fields: int = DEFAULT_LIMITS.max_fields,
        max_part_size: int = DEFAULT_LIMITS.max_part_size,
        max_file_size: int | None = DEFAULT_LIMITS.max_file_size,
        max_size: int | None = DEFAULT_LIMITS.max_size,
    ) -> FormData:
        """Parse an urlencoded or multipart form (cached; see "Request bodies and uploads").

        Limits exceeded raise `HTTPException(413)`, a malformed body 400, another content
        type 415; a negative limit raises `ValueError`. Uploaded files are closed and
        removed when the request ends.
        """
        if self._form is None:
            limits = form_limits(max_files, max_fields, max_part_size, max_file_size, max_size)
            self._form = await parse_form(self.headers, self.stream(), limits)
        return self._form

    def parts(
        self, *, max_parts: int = 1000, max_size: int | None = None
    ) -> AsyncIterator[MultipartPart]:
        """A ``multipart/form-data`` body part by part, as it arrives: nothing is kept or
        spooled (see "Streaming an upload part by part").

        ``async for part in request.parts():`` yields each `MultipartPart` in order;
        read its body (``part.stream()``, ``part.read()``, ``part.text()``) before the
        next one (an unread part is skipped). More than ``max_parts`` parts, or a body
        over ``max_size`` bytes: `HTTPException(413)`; a malformed body 400; another
        content type 415; a negative limit raises `ValueError`. Consumes the body, as
        `stream()` does.
        """
        if not isinstance(max_parts, int) or max_parts < 0:
            raise ValueError(f"max_parts must be a non-negative int, not {max_parts!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError(f"max_size must be a non-negative int or None, not {max_size!r}")
        return iter_parts(self.headers, self.stream(), max_parts, max_size)

    async def close(self) -> None:
        """Release what the request holds (uploaded files). The router calls it for you."""
        if self._form is not None:
            await self._form.close()

    async def is_disconnected(self) -> bool:
        """True once the client has gone away. Never blocks.

        Takes whatever messages the server has ready without waiting for one: body
        chunks are kept, in order, for a later `body()`/`stream()`/`form()` (at most
        about 1 MiB of an unread body: past that it stops reading ahead and answers
        False until the body is read); a disconnect makes it True from then on. So it
        turns True within a loop turn or two of the server reporting the disconnect,
        whether or not the body was read. Useful in long loops that do not stream
        (streaming responses notice disconnects on their own).
        """
        if self._is_disconnected:
            return True
        relay: ReceiveRelay | None = self.scope.get(RELAY_KEY)
        if relay is not None and relay.disconnected:
            self._is_disconnected = True
            return True
        receive = self._relayed_receive()
        while self._pending_bytes <= _MAX_READ_AHEAD:
            message = await receive_if_ready(receive)
            if message is None:
                return False
            message_type = message["type"]
            if message_type == "http.disconnect":
                self._is_disconnected = True
                return True
            if message_type == "http.request" and not self._body_complete:
                # A body chunk: keep it for whoever reads the body (stream() may be
                # part-way through it: it takes the kept ones first).
                if self._pending is None:
                    self._pending = deque()
                self._pending.append(message)
                self._pending_bytes += len(message.get("body", b""))
                if not message.get("more_body", False):
                    self._body_complete = True
            else:
                return False  # not body once the body is complete: dropped
        return False


# How much of an unread body is_disconnected() keeps in memory while polling.
_MAX_READ_AHEAD = 1024 * 1024
