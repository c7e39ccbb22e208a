"""Request and response data structures: headers, query parameters, URLs, state.

All of them are plain containers over the raw ASGI values. Parsing happens once, when
a value is first asked for.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Generic, TypeVar
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from asgikit._concurrency import run_to_the_end
from asgikit._http import encode_header as encode_header  # where other modules find it
from asgikit.types import Scope

__all__ = [
    "URL",
    "FormData",
    "Headers",
    "MutableHeaders",
    "QueryParams",
    "State",
    "UploadFile",
]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Headers(Mapping[str, str]):
    """Case-insensitive, immutable, multi-valued HTTP headers.

    ``headers["content-type"]`` is the first value; ``getlist(name)`` all of them.
    Build from a mapping, a list of raw ``(bytes, bytes)`` pairs, or an ASGI scope.
    """

    __slots__ = ("_list",)

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        *,
        raw: list[tuple[bytes, bytes]] | None = None,
        scope: Scope | None = None,
    ) -> None:
        if headers is not None:
            if raw is not None or scope is not None:
                raise TypeError("pass only one of headers, raw and scope")
            self._list = [encode_header(key, value) for key, value in headers.items()]
        elif raw is not None:
            if scope is not None:
                raise TypeError("pass only one of headers, raw and scope")
            self._list = raw
        elif scope is not None:
            self._list = list(scope["headers"])
        else:
            self._list = []

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """The raw ``(name, value)`` byte pairs, in order."""
        return self._list

    def keys(self) -> list[str]:  # type: ignore[override]
        """Every header name (lower case), repeats included, in order."""
        return [key.decode("latin-1") for key, _ in self._list]

    def values(self) -> list[str]:  # type: ignore[override]
        """Every header value, in order."""
        return [value.decode("latin-1") for _, value in self._list]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every ``(name, value)`` pair, repeats included, in order."""
        return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in self._list]

    def getlist(self, key: str) -> list[str]:
        """Every value of header ``key``, in order (``[]`` when absent)."""
        name = key.lower().encode("latin-1")
        return [value.decode("latin-1") for key_, value in self._list if key_ == name]

    def __getitem__(self, key: str) -> str:
        name = key.lower().encode("latin-1")
        for key_, value in self._list:
            if key_ == name:
                return value.decode("latin-1")
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The first value of header ``key`` (any case), or ``default`` when absent."""
        name = key.lower().encode("latin-1")
        for key_, value in self._list:
            if key_ == name:
                return value.decode("latin-1")
        return default

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = key.lower().encode("latin-1")
        return any(key_ == name for key_, _ in self._list)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._list)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self._list) == sorted(other._list)
        if isinstance(other, Mapping):
            return sorted(self.items()) == sorted((k.lower(), v) for k, v in other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.items()!r})"


class MutableHeaders(Headers):
    """Headers that can be changed in place; a response's ``.headers``.

    Changes write through to the raw list the response sends. Names and values with CR,
    LF or NUL raise `ValueError`.
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``, replacing every earlier value of ``key``."""
        name, raw_value = encode_header(key, value)
        found = False
        kept: list[tuple[bytes, bytes]] = []
        for pair in self._list:
            if pair[0] == name:
                if not found:
                    kept.append((name, raw_value))
                    found = True
            else:
                kept.append(pair)
        if not found:
            kept.append((name, raw_value))
        self._list[:] = kept

    def __delitem__(self, key: str) -> None:
        name = key.lower().encode("latin-1")
        self._list[:] = [pair for pair in self._list if pair[0] != name]

    def append(self, key: str, value: str) -> None:
        """Add a value for ``key`` after any existing ones (e.g. ``Set-Cookie``)."""
        self._list.append(encode_header(key, value))

    def setdefault(self, key: str, value: str) -> str:
        """Set ``key`` to ``value`` unless present; return the value in force."""
        current: str | None = self.get(key)
        if current is not None:
            return current
        self.append(key, value)
        return value

    def update(self, other: Mapping[str, str]) -> None:
        """Set every header of ``other``, replacing existing values."""
        for key, value in other.items():
            self[key] = value

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove ``key`` and return its first value (or ``default``)."""
        value = self.get(key, default)
        del self[key]
        return value

    def add_vary_header(self, value: str) -> None:
        """Add ``value`` to the ``Vary`` header unless it is listed already."""
        existing = [item.strip() for item in self.get("vary", "").split(",") if item.strip()]
        if value.lower() not in (item.lower() for item in existing):
            existing.append(value)
        self["vary"] = ", ".join(existing)


_Value = TypeVar("_Value")


class _MultiDict(Mapping[str, _Value], Generic[_Value]):
    """The immutable multi-dict behind `QueryParams` and `FormData`.

    ``d[key]`` and ``d.get(key)`` give the last value of a repeated key; ``getlist(key)``
    all of them, in order; ``multi_items()`` every pair in order. ``len``, ``keys``,
    ``values``, ``items`` and ``in`` see each key once (with its last value).

    Equality, the one rule for both: two multi-dicts are equal when every key has the
    same values in the same order, that is when ``getlist`` answers alike for every
    key; the order between different keys does not count (``a=1&b=2`` equals
    ``b=2&a=1``, ``a=1&a=2`` does not equal ``a=2&a=1``). Against a plain mapping, the
    last value of each key is compared (``QueryParams("a=1&a=2") == {"a": "2"}``).
    """

    __slots__ = ("_dict", "_list")

    _list: list[tuple[str, _Value]]
    _dict: dict[str, _Value]

    def _set_items(self, items: list[tuple[str, _Value]]) -> None:
        self._list = items
        self._dict = dict(items)

    def getlist(self, key: str) -> list[_Value]:
        """Every value of ``key``, in order (``[]`` when absent)."""
        return [value for key_, value in self._list if key_ == key]

    def multi_items(self) -> list[tuple[str, _Value]]:
        """Every ``(key, value)`` pair, repeats included, in order."""
        return list(self._list)

    def __getitem__(self, key: str) -> _Value:
        return self._dict[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def _values_by_key(self) -> dict[str, list[_Value]]:
        grouped: dict[str, list[_Value]] = {}
        for key, value in self._list:
            grouped.setdefault(key, []).append(value)
        return grouped

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _MultiDict):
            return self._values_by_key() == other._values_by_key()
        if isinstance(other, Mapping):
            return self._dict == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class QueryParams(_MultiDict[str]):
    """An immutable multi-dict of query parameters.

    ``params["q"]`` is the last value of ``q``; ``getlist("q")`` all of them, in order.
    Build from a query string (``str`` or ``bytes``), a mapping or a list of pairs.
    Equal to another `QueryParams` (or `FormData`) with the same values, in the same
    order, for every key; see `_MultiDict` for the rule.
    """

    __slots__ = ()

    def __init__(
        self, params: str | bytes | Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> None:
        if params is None:
            items: list[tuple[str, str]] = []
        elif isinstance(params, bytes):
            items = parse_qsl(params.decode("latin-1"), keep_blank_values=True)
        elif isinstance(params, str):
            items = parse_qsl(params, keep_blank_values=True)
        elif isinstance(params, Mapping):
            items = [(str(key), str(value)) for key, value in params.items()]
        else:
            items = [(str(key), str(value)) for key, value in params]
        self._set_items(items)

    def __str__(self) -> str:
        return urlencode(self._list)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class URL:
    """A parsed URL: ``scheme netloc hostname port path query fragment``; ``str()`` gives it back.

    Build from a string, or from an ASGI scope with ``URL(scope=scope)``: the ``Host``
    header wins over ``scope["server"]`` when it is a plain ``host[:port]``; any other
    ``Host`` (``evil.com/x``, ``a@b``, ``[::1``, ``a:99999``) is ignored, so the URL's
    path is always the request's and its ``port`` never raises.
    """

    __slots__ = ("_parts", "_url")

    def __init__(self, url: str = "", *, scope: Scope | None = None) -> None:
        if scope is not None:
            if url:
                raise TypeError("pass either url or scope, not both")
            url = _url_from_scope(scope)
        self._url = url
        self._parts: SplitResult | None = None

    @property
    def components(self) -> SplitResult:
        """The `urllib.parse.SplitResult` of this URL."""
        if self._parts is None:
            self._parts = urlsplit(self._url)
        return self._parts

    @property
    def scheme(self) -> str:
        """``http``, ``https``, ``ws`` or ``wss`` (``""`` for a relative URL)."""
        return self.components.scheme

    @property
    def netloc(self) -> str:
        """``user:password@host:port`` as written."""
        return self.components.netloc

    @property
    def path(self) -> str:
        """The path, still percent-encoded as in the URL."""
        return self.components.path

    @property
    def query(self) -> str:
        """The query string, without ``?``."""
        return self.components.query

    @property
    def fragment(self) -> str:
        """The fragment, without ``#``."""
        return self.components.fragment

    @property
    def username(self) -> str | None:
        """The user name of the ``netloc``, or None."""
        return self.components.username

    @property
    def password(self) -> str | None:
        """The password of the ``netloc``, or None."""
        return self.components.password

    @property
    def hostname(self) -> str | None:
        """The host, lower case, without brackets for IPv6 (None for a relative URL)."""
        return self.components.hostname

    @property
    def port(self) -> int | None:
        """The explicit port, or None when the URL has none."""
        return self.components.port

    @property
    def is_secure(self) -> bool:
        """True for ``https`` and ``wss``."""
        return self.scheme in ("https", "wss")

    def replace(self, **kwargs: Any) -> URL:
        """A copy with some components replaced: ``scheme netloc path query fragment``,
        or ``hostname``/``port`` (which rebuild ``netloc``)."""
        if "hostname" in kwargs or "port" in kwargs:
            hostname = kwargs.pop("hostname", None) or self.hostname or ""
            port = kwargs.pop("port", self.port)
            if ":" in hostname and not hostname.startswith("["):
                hostname = f"[{hostname}]"
            netloc = hostname if port is None else f"{hostname}:{port}"
            userinfo = self.netloc.rpartition("@")[0]
            kwargs["netloc"] = f"{userinfo}@{netloc}" if userinfo else netloc
        return URL(self.components._replace(**kwargs).geturl())

    def include_query_params(self, **params: Any) -> URL:
        """A copy with ``params`` set in the query string: each replaces every value of
        its name, where the first of them was (new names go last); other parameters are
        kept, repeated ones with all their values."""
        items: list[tuple[str, str]] = []
        placed: set[str] = set()
        for key, value in QueryParams(self.query).multi_items():
            if key not in params:
                items.append((key, value))
            elif key not in placed:
                placed.add(key)
                items.append((key, str(params[key])))
        items += [(key, str(value)) for key, value in params.items() if key not in placed]
        return self.replace(query=urlencode(items))

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, URL)):
            return self._url == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)


# A host name (a trailing dot, the absolute form of a DNS name, included) or a bracketed
# IPv6 address, then an optional port.
_PLAIN_NETLOC = re.compile(
    r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d+)?"
)


def redirect_location(scope: Scope, path: str) -> str:
    """A ``Location`` for the request of ``scope`` moved to ``path`` (query kept).

    Absolute when the request's ``Host`` is a plain host name or address; otherwise
    only the path and query: the ``Host`` header is whatever the client sent, and a
    redirect must not point at ``evil.com/`` or ``x@evil.com``.
    """
    query_string: bytes = scope.get("query_string", b"")
    relative = encoded_path(path) + ("?" + query_string.decode("latin-1") if query_string else "")
    if plain_host_header(scope) is INVALID_HOST:
        return relative
    return str(URL(scope={**scope, "path": path}))


INVALID_HOST = "\0invalid"


def plain_host_header(scope: Scope) -> str | None:
    """The ``Host`` header when it is a plain ``host[:port]``; `INVALID_HOST` for any
    other text (``evil.com/x``, ``a@b``, ``[::1``, ``a:99999``); ``None`` when absent."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host: str = value.decode("latin-1")
            if not _PLAIN_NETLOC.fullmatch(host):
                return INVALID_HOST
            try:
                _port = urlsplit(f"//{host}").port  # out of range, or brackets around a non-IP
            except ValueError:
                return INVALID_HOST
            return host
    return None


# What a path segment may hold as it is (RFC 3986 pchar and "/"); everything else,
# "%", "?" and "#" included, is percent-encoded (non-ASCII as UTF-8).
_PATH_SAFE = "/:@!$&'()*+,;="


def encoded_path(path: str) -> str:
    """A decoded path (``scope["path"]``) percent-encoded for a URL, so that text such as
    ``?``, ``#`` or ``%41`` in a segment reads back as the same path.

    >>> encoded_path("/files/a?b/100%/naïve")
    '/files/a%3Fb/100%25/na%C3%AFve'
    """
    return quote(path, safe=_PATH_SAFE)


def _url_from_scope(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    path = encoded_path(scope.get("path", "/"))
    query_string: bytes = scope.get("query_string", b"")
    # A Host header that is not a plain host[:port] is ignored, as if absent: spliced
    # into the URL, "evil.com/x?" would move the path into the query.
    host = plain_host_header(scope)
    if host is not None and host is not INVALID_HOST:
        url = f"{scheme}://{host}{path}"
    elif scope.get("server"):
        server_host, port = scope["server"]
        if port is None or _DEFAULT_PORTS.get(scheme) == port:
            url = f"{scheme}://{server_host}{path}"
        else:
            url = f"{scheme}://{server_host}:{port}{path}"
    else:
        url = path
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


class State:
    """Attribute access to a dict: ``request.state.model`` reads ``state["model"]``.

    A missing attribute raises `AttributeError` naming it.
    """

    __slots__ = ("_state",)

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_state", {} if state is None else state)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._state[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._state[name]
        except KeyError:
            raise AttributeError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._state!r})"


SPOOL_MAX_SIZE = 1024 * 1024
"""Bytes an `UploadFile` keeps in memory before its spooled file moves to disk."""

# Closing a file on disk frees its pages in the kernel, about 25 us per MiB here: past
# this size that would stall the event loop longer than a thread hand-off takes.
_CLOSE_IN_THREAD = 4 * 1024 * 1024


class UploadFile:
    """An uploaded file: its metadata and a spooled temporary file holding its content.

    ``filename`` is the client's file name (RFC 7578 / RFC 5987 ``filename*`` decoded; a
    form part without one is a text field, and ``None`` only for an `UploadFile` made by
    hand), ``content_type`` the part's ``Content-Type`` header
    (``None`` if absent), ``headers`` all the part's headers, ``size`` the number of bytes.
    ``file`` is a `tempfile.SpooledTemporaryFile`: in memory up to 1 MiB, then an
    anonymous file on disk that the operating system deletes when it is closed. Use it
    directly from sync code (``PIL.Image.open(upload.file)``); the async methods run disk
    I/O in the thread pool and stay on the event loop while the data is in memory.

    Files parsed by `Request.form` are rewound and are closed for you when the request
    ends. An `UploadFile` built by hand with ``file=None`` starts empty and spooled.
    """

    __slots__ = ("content_type", "file", "filename", "headers", "size")

    def __init__(
        self,
        file: IO[bytes] | None = None,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        headers: Headers | None = None,
        size: int | None = None,
    ) -> None:
        if file is None:
            # Owned by this UploadFile and closed by close(): no context manager fits.
            file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_SIZE)  # noqa: SIM115
            if size is None:
                size = 0
        self.file: IO[bytes] = file
        self.filename = filename
        self.headers = headers if headers is not None else Headers()
        if content_type is None:
            content_type = self.headers.get("content-type")
        self.content_type: str | None = content_type
        self.size: int | None = size

    @property
    def in_memory(self) -> bool:
        """True while the content is held in memory (no disk I/O to read or write it)."""
        file = self.file
        if isinstance(file, tempfile.SpooledTemporaryFile):
            return not getattr(file, "_rolled", True)
        return isinstance(file, io.BytesIO)

    async def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all the rest with ``-1``) from the current position."""
        if self.in_memory:
            return self.file.read(size)
        return await run_to_the_end(self.file.read, size)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move to ``offset`` (relative to ``whence``, as `io.IOBase.seek`); returns the new
        position. `read` after `seek(0)` starts over."""
        if self.in_memory:
            return self.file.seek(offset, whence)
        return await run_to_the_end(self.file.seek, offset, whence)

    async def write(self, data: bytes) -> int:
        """Write ``data`` at the current position and update ``size``; returns its length.

        Stays on the event loop while the file stays within its 1 MiB in-memory budget;
        a write that moves it to disk, or goes to disk, runs in the thread pool.
        """
        file = self.file
        if self.in_memory and (
            not isinstance(file, tempfile.SpooledTemporaryFile)
            or file.tell() + len(data) <= SPOOL_MAX_SIZE
        ):
            end = _write_and_tell(file, data)
        else:
            end = await run_to_the_end(_write_and_tell, file, data)
        if self.size is None or end > self.size:
            self.size = end
        return len(data)

    async def close(self) -> None:
        """Close the file; a temporary file on disk is deleted. Closing twice is harmless.

        A file on disk of 4 MiB or more is closed in the thread pool: the kernel frees
        its pages then (about 1 ms for 50 MiB), which would stall the event loop.
        Anything smaller closes on the loop, where a thread hand-off would cost more.
        """
        file = self.file
        if (self.size or 0) >= _CLOSE_IN_THREAD and not file.closed and not self.in_memory:
            await run_to_the_end(file.close)
        else:
            file.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(filename={self.filename!r}, size={self.size!r}, "
            f"content_type={self.content_type!r})"
        )


def _write_and_tell(file: IO[bytes], data: bytes) -> int:
    file.write(data)
    return file.tell()


class FormData(_MultiDict["str | UploadFile"]):
    """An immutable multi-dict of form fields: ``str`` values and `UploadFile` files.

    ``form["name"]`` and ``form.get("name")`` give the last value of a repeated name;
    ``getlist("name")`` all of them in order; ``multi_items()`` every pair. ``len``,
    ``keys``, ``values``, ``items`` and ``in`` see each name once. Equality follows the
    one multi-dict rule (same values in the same order for every name; files compare
    by identity). `close` closes every `UploadFile`; `Request.form` results are closed
    for you when the request ends.
    """

    __slots__ = ()

    def __init__(
        self,
        items: Mapping[str, str | UploadFile] | Iterable[tuple[str, str | UploadFile]] = (),
    ) -> None:
        self._set_items(list(items.items()) if isinstance(items, Mapping) else list(items))

    async def close(self) -> None:
        """Close every `UploadFile` (deleting its temporary file). Closing twice is harmless."""
        for _, value in self._list:
            if isinstance(value, UploadFile):
                await value.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._list!r})"
