"""Headers, MutableHeaders, QueryParams, URL, State."""

from __future__ import annotations

import pytest

from asgikit import URL, Headers, QueryParams, State
from asgikit.datastructures import MutableHeaders


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers(raw=[(b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2")])
    assert headers["Content-Type"] == "text/plain"
    assert headers.get("X-A") == "1"
    assert headers.getlist("x-a") == ["1", "2"]
    assert headers.get("missing", "default") == "default"
    assert "CONTENT-TYPE" in headers and "nope" not in headers
    assert headers.keys() == ["content-type", "x-a", "x-a"]
    assert headers.items()[1] == ("x-a", "1")
    assert len(headers) == 3
    with pytest.raises(KeyError):
        headers["missing"]
    assert Headers({"A": "1"}) == {"a": "1"}
    assert Headers(scope={"headers": [(b"a", b"1")]}) == Headers({"a": "1"})


def test_headers_constructor_arguments_are_exclusive() -> None:
    with pytest.raises(TypeError):
        Headers({"a": "1"}, raw=[])


def test_mutable_headers() -> None:
    raw: list[tuple[bytes, bytes]] = [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"3")]
    headers = MutableHeaders(raw=raw)
    headers["X-A"] = "9"
    assert raw == [(b"x-a", b"9"), (b"x-b", b"3")]
    headers.append("x-b", "4")
    assert headers.getlist("x-b") == ["3", "4"]
    assert headers.setdefault("x-c", "5") == "5"
    assert headers.setdefault("x-c", "6") == "5"
    headers.update({"x-d": "7"})
    assert headers.pop("x-d") == "7"
    del headers["x-b"]
    assert "x-b" not in headers
    headers.add_vary_header("Origin")
    headers.add_vary_header("origin")
    headers.add_vary_header("Accept-Encoding")
    assert headers["vary"] == "Origin, Accept-Encoding"
    with pytest.raises(ValueError):
        headers["x-e"] = "bad\r\nvalue"
    with pytest.raises(ValueError):
        headers.append("bad name:", "x")


def test_query_params() -> None:
    params = QueryParams("a=1&b=2&a=3&empty=&sp=a+b%20c")
    assert params["a"] == "3"
    assert params.getlist("a") == ["1", "3"]
    assert params["empty"] == ""
    assert params["sp"] == "a b c"
    assert params.multi_items()[:3] == [("a", "1"), ("b", "2"), ("a", "3")]
    assert "b" in params and len(params) == 4
    assert QueryParams(b"x=%C3%A9")["x"] == "é"  # percent-escapes are UTF-8
    assert QueryParams({"x": "1"}) == QueryParams([("x", "1")])
    assert str(QueryParams([("q", "a b"), ("q", "&")])) == "q=a+b&q=%26"


def test_url() -> None:
    url = URL("https://user:pw@example.org:8443/a/b?x=1#frag")
    assert (url.scheme, url.hostname, url.port, url.path, url.query, url.fragment) == (
        "https",
        "example.org",
        8443,
        "/a/b",
        "x=1",
        "frag",
    )
    assert url.netloc == "user:pw@example.org:8443"
    assert url.username == "user" and url.password == "pw"
    assert url.is_secure
    assert str(url.replace(path="/c", query="")) == "https://user:pw@example.org:8443/c#frag"
    assert (
        str(url.replace(hostname="other.org", port=None))
        == "https://user:pw@other.org/a/b?x=1#frag"
    )
    assert str(URL("http://h/p?a=1").include_query_params(b=2, a=3)) == "http://h/p?a=3&b=2"
    repeated = URL("http://h/p?tag=cat&tag=dog&limit=10&limit=20")
    assert str(repeated.include_query_params(page=2, limit=5)) == (
        "http://h/p?tag=cat&tag=dog&limit=5&page=2"  # both tags kept, both limits replaced
    )
    assert URL("http://h/") == "http://h/"


def test_url_from_scope() -> None:
    scope = {
        "scheme": "http",
        "server": ("10.0.0.1", 8000),
        "path": "/p",
        "query_string": b"q=1",
        "headers": [],
    }
    assert str(URL(scope=scope)) == "http://10.0.0.1:8000/p?q=1"
    scope["server"] = ("10.0.0.1", 80)
    assert str(URL(scope=scope)) == "http://10.0.0.1/p?q=1"
    scope["headers"] = [(b"host", b"example.org")]
    assert str(URL(scope=scope)) == "http://example.org/p?q=1"


def test_state() -> None:
    state = State({"model": "m"})
    assert state.model == "m"
    state.cache = {}
    assert "cache" in state
    del state.cache
    with pytest.raises(AttributeError, match="cache"):
        state.cache  # noqa: B018
