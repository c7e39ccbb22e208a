"""The pure HTTP rules of `asgikit._http`, and the requests/forms/responses that use them."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from helpers import http_scope

from asgikit import HTTPException, PlainTextResponse, Request, Router, _http
from asgikit._http import (
    body_too_large,
    content_length,
    content_type_header,
    encode_header,
    parse_content_length,
    parse_cookie_header,
)
from asgikit.testing import TestClient


def test_docstring_examples_run() -> None:
    assert doctest.testmod(_http).failed == 0


@pytest.mark.parametrize(
    ("value", "length"), [(b"0", 0), (b"42", 42), ("007", 7), (b"9" * 20, 10**20 - 1)]
)
def test_content_length_is_ascii_digits(value: bytes | str, length: int) -> None:
    assert parse_content_length(value) == length


@pytest.mark.parametrize(
    "value",
    [
        b"+1",
        b"1_0",
        b" 1",
        b"1 ",
        b"-1",
        b"",
        b"0x10",
        b"1,1",
        b"1.0",
        b"\xd9\xa1",
        "\u0661",
        b"9" * 21,
    ],
)
def test_content_length_refuses_everything_else_with_a_400(value: bytes | str) -> None:
    with pytest.raises(HTTPException) as caught:
        parse_content_length(value)
    assert caught.value.status_code == 400
    assert "Invalid Content-Length header" in str(caught.value.detail)


def test_content_length_of_raw_headers() -> None:
    assert content_length([]) is None
    assert content_length([(b"host", b"x"), (b"content-length", b"3")]) == 3
    assert content_length([(b"content-length", b"3"), (b"content-length", b"3")]) == 3
    with pytest.raises(HTTPException) as caught:
        content_length([(b"content-length", b"3"), (b"content-length", b"4")])
    assert caught.value.status_code == 400


def test_one_413_wording() -> None:
    error = body_too_large(10)
    assert (error.status_code, error.detail) == (
        413,
        "Request body is larger than max_size=10 bytes",
    )


def body_app() -> Router:
    router = Router()

    @router.post("/body")
    async def body(request: Request) -> bytes:
        return await request.body(max_size=100)

    @router.post("/form")
    async def form(request: Request) -> Any:
        return dict(await request.form(max_size=100))

    return router


@pytest.mark.parametrize("value", [b"+3", b"1_0", b" 3", b"-3", b""])
@pytest.mark.parametrize("path", ["/body", "/form"])
def test_body_and_form_refuse_a_non_digit_content_length(value: bytes, path: str) -> None:
    # 0.1.0's body() used int(), which takes "+3" and "1_0"; forms stripped " 3".
    client = TestClient(body_app())
    headers = {
        "content-length": value.decode(),
        "content-type": "application/x-www-form-urlencoded",
    }
    request = client.build_request("POST", path, content=b"a=1", headers=headers)
    request.headers["content-length"] = value.decode()
    response = client.send(request)
    assert response.status_code == 400
    assert "Invalid Content-Length header" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/body", "/form"])
def test_body_and_form_say_413_in_the_same_words(path: str) -> None:
    client = TestClient(body_app())
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = client.post(path, content=b"a=" + b"1" * 200, headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"] == "Request body is larger than max_size=100 bytes"


def test_encode_header_refuses_injection_and_bad_names() -> None:
    assert encode_header("X-Thing", "v") == (b"x-thing", b"v")
    for name, value in [
        ("x", "a\r\nb: c"),
        ("x\n", "v"),
        ("x", "\0"),
        ("", "v"),
        (" x", "v"),
        ("a:b", "v"),
    ]:
        with pytest.raises(ValueError):
            encode_header(name, value)
    with pytest.raises(UnicodeEncodeError):
        encode_header("x", "\u20ac")


def test_content_type_header_charset() -> None:
    assert content_type_header("application/json") == b"application/json"
    assert content_type_header("text/plain") == b"text/plain; charset=utf-8"
    # 0.1.0 cached by media type alone: the second charset got the first one's header.
    assert content_type_header("text/csv", "latin-1") == b"text/csv; charset=latin-1"
    assert content_type_header("text/csv") == b"text/csv; charset=utf-8"
    assert content_type_header("text/plain; charset=ascii") == b"text/plain; charset=ascii"
    # Media types are case-insensitive (RFC 9110): a hand-written one gets its charset too.
    assert content_type_header("TEXT/HTML") == b"TEXT/HTML; charset=utf-8"


def test_a_response_charset_is_its_own() -> None:
    class Latin1Text(PlainTextResponse):
        charset = "latin-1"

    router = Router()

    @router.get("/utf8")
    async def utf8(request: Request) -> PlainTextResponse:
        return PlainTextResponse("é")

    @router.get("/latin1")
    async def latin1(request: Request) -> PlainTextResponse:
        return Latin1Text("é")

    client = TestClient(router)
    assert client.get("/utf8").headers["content-type"] == "text/plain; charset=utf-8"
    assert client.get("/latin1").headers["content-type"] == "text/plain; charset=latin-1"


@pytest.mark.parametrize(
    ("header", "cookies"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ('a="x y"', {"a": "x y"}),
        ("a=1; a=2", {"a": "2"}),
        ("flag", {"": "flag"}),
        ("a=b=c", {"a": "b=c"}),
        ("; ;", {}),
        ("", {}),
    ],
)
def test_parse_cookie_header(header: str, cookies: dict[str, str]) -> None:
    assert parse_cookie_header(header) == cookies


def test_cookie_parser_keeps_its_old_import_path() -> None:
    from asgikit.requests import parse_cookie_header as old

    assert old is parse_cookie_header


@pytest.mark.parametrize(
    "host", [b"/", b"evil.com/x?", b"a@evil.com", b"[::1", b"a:99999", b"a:x", b"a b"]
)
def test_a_host_that_is_not_host_and_port_is_ignored(host: bytes) -> None:
    # Found by the property tests: 0.1.0 spliced any Host into the URL, so "/" moved the
    # path, "[::1" and "a:x" raised ValueError (a 500) from url.path and url.port.
    from asgikit import URL

    scope = http_scope("/p", headers=[(b"host", host)], server=("1.2.3.4", 81))
    url = URL(scope=scope)
    assert (str(url), url.path, url.port) == ("http://1.2.3.4:81/p", "/p", 81)


@pytest.mark.parametrize("host", [b"example.com", b"example.com:8080", b"[::1]:8000", b"10.0.0.1"])
def test_a_plain_host_header_makes_the_url(host: bytes) -> None:
    from asgikit import URL

    scope = http_scope("/p", headers=[(b"host", host)], server=("1.2.3.4", 81))
    assert str(URL(scope=scope)) == f"http://{host.decode()}/p"


def test_set_cookie_header_is_formatted_in_one_pure_function() -> None:
    from datetime import datetime, timezone

    from asgikit._http import format_set_cookie

    header = format_set_cookie(
        "path",  # an attribute's name is a fine cookie name (RFC 6265)
        "a b",
        max_age=60,
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        domain="example.org",
        secure=True,
        httponly=True,
        samesite="none",
    )
    assert header == (
        'path="a b"; expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/; Domain=example.org; '
        "Max-Age=60; Secure; HttpOnly; SameSite=None"
    )
    with pytest.raises(ValueError, match="Latin-1"):
        format_set_cookie("token", "snow ☃")
    with pytest.raises(ValueError, match="invalid cookie name"):
        format_set_cookie("a b", "x")
    with pytest.raises(ValueError, match="must not contain"):
        format_set_cookie("a", "x", path="/; Domain=evil")


@pytest.mark.parametrize("size", [0, 1, 13, 4095, 4096, 10**9])
def test_content_length_pair_and_the_small_table_agree(size: int) -> None:
    from asgikit import Response
    from asgikit._http import SMALL_LENGTHS, content_length_pair

    expected = (b"content-length", str(size).encode())
    assert content_length_pair(size) == expected
    if size < len(SMALL_LENGTHS):
        assert SMALL_LENGTHS[size] == expected
    if size <= 4096:  # a Response takes the table below 4 KiB, formats above
        assert Response(b"x" * size).raw_headers[0] == expected
