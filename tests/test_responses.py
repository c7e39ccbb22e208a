"""Responses: bodies, media types, headers, cookies, header-injection safety, redirects."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from asgikit import (
    BackgroundTask,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    Router,
)
from asgikit.testing import TestClient


def serve(response: Response) -> Any:
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Response:
        return response

    return TestClient(router, follow_redirects=False).get("/")


def test_plain_html_json() -> None:
    plain = serve(PlainTextResponse("héllo"))
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"
    assert plain.headers["content-length"] == str(len("héllo".encode()))
    assert plain.text == "héllo"
    html = serve(HTMLResponse("<b>hi</b>"))
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    data = serve(JSONResponse({"emoji": "🤖", "n": [1, 2.5, None, True]}))
    assert data.headers["content-type"] == "application/json"
    assert data.content == '{"emoji":"🤖","n":[1,2.5,null,true]}'.encode()


def test_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        JSONResponse({"x": float("nan")})


def test_response_media_type_and_status() -> None:
    response = serve(Response(b"\x89PNG", status_code=201, media_type="image/png"))
    assert response.status_code == 201
    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG"
    text_type = serve(Response("a,b", media_type="text/csv"))
    assert text_type.headers["content-type"] == "text/csv; charset=utf-8"
    explicit = serve(Response("x", media_type="text/plain; charset=latin-1"))
    assert explicit.headers["content-type"] == "text/plain; charset=latin-1"


def test_no_content_length_for_204_and_304() -> None:
    for status in (204, 304):
        response = Response(status_code=status)
        assert "content-length" not in response.headers
    assert Response().headers["content-length"] == "0"


def test_a_204_or_304_sends_no_body_whatever_it_was_given() -> None:
    # Servers refuse a body without a Content-Length there (uvicorn raises).
    for response in (JSONResponse(None, status_code=204), Response("unchanged", status_code=304)):
        assert response.body == b""
        assert serve(response).content == b""


def test_user_headers_win_and_are_mutable() -> None:
    response = PlainTextResponse("x", headers={"Content-Type": "text/x-custom", "X-A": "1"})
    assert response.headers["content-type"] == "text/x-custom"
    assert response.headers.getlist("content-type") == ["text/x-custom"]
    response.headers["x-b"] = "2"
    response.headers.append("x-b", "3")
    del response.headers["x-a"]
    served = serve(response)
    assert served.headers.get_list("x-b") == ["2", "3"]
    assert "x-a" not in served.headers


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Evil", "a\r\nSet-Cookie: x=1"), ("X-Evil\n", "a"), ("X-Evil", "a\nb"), ("X-Nul", "a\0b")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Response(headers={name: value})
    response = Response()
    with pytest.raises(ValueError):
        response.headers[name] = value


def test_invalid_content_type_is_refused() -> None:
    with pytest.raises(TypeError, match="JSONResponse"):
        Response({"a": 1})


def test_set_and_delete_cookie() -> None:
    response = Response()
    response.set_cookie(
        "session",
        "a b;c",
        max_age=60,
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        domain="example.org",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie("old")
    cookies = response.headers.getlist("set-cookie")
    assert cookies[0].startswith('session="a b\\073c";')  # quoted: ";" cannot end the value
    for part in (
        "Max-Age=60",
        "expires=Wed, 02 Jan 2030 03:04:05 GMT",
        "Domain=example.org",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ):
        assert part in cookies[0]
    assert "Max-Age=0" in cookies[1] and cookies[1].startswith('old=""')


def test_cookie_validation() -> None:
    response = Response()
    with pytest.raises(ValueError):
        response.set_cookie("bad name", "x")
    with pytest.raises(ValueError):
        response.set_cookie("ok", "x", path="/; Domain=evil.com")
    with pytest.raises(ValueError):
        response.set_cookie("ok", "x", samesite="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        response.set_cookie("ok", "x", domain="a\r\nb")
    with pytest.raises(ValueError, match="expires"):  # no attribute smuggled in by a date
        response.set_cookie("ok", "x", expires="Thu, 01 Jan 2099 00:00:00 GMT; Domain=evil")
    with pytest.raises(ValueError, match="expires"):
        response.set_cookie("ok", "x", expires="Thu, 01 Jan 2099\r\nX-Evil: 1")


def test_cookies_reach_the_client() -> None:
    router = Router()

    @router.get("/login")
    async def login(request: Request) -> Response:
        response = PlainTextResponse("in")
        response.set_cookie("user", "ann")
        return response

    @router.get("/me")
    async def me(request: Request) -> str:
        return request.cookies.get("user", "nobody")

    with TestClient(router) as client:
        client.get("/login")
        assert client.get("/me").text == "ann"


def test_redirect() -> None:
    response = serve(RedirectResponse("/target path?q=é", status_code=303))
    assert response.status_code == 303
    assert response.headers["location"] == "/target%20path?q=%C3%A9"
    assert response.content == b""


def test_background_task_runs_after_body() -> None:
    ran: list[str] = []

    async def record(value: str) -> None:
        ran.append(value)

    def record_sync(value: str) -> None:
        ran.append(value)

    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Response:
        assert ran == []
        return PlainTextResponse("ok", background=BackgroundTask(record, "async"))

    @router.get("/sync")
    async def sync(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(record_sync, value="sync"))

    client = TestClient(router)
    assert client.get("/").text == "ok"
    assert client.get("/sync").text == "ok"
    assert ran == ["async", "sync"]


def test_head_of_plain_response_has_headers_only() -> None:
    router = Router()

    @router.get("/")
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"a": 1})

    response = TestClient(router).head("/")
    assert response.content == b""
    assert response.headers["content-length"] == "7"


def test_subclass_with_custom_render() -> None:
    class UpperResponse(PlainTextResponse):
        def render(self, content: Any) -> bytes:
            return str(content).upper().encode()

    served = serve(UpperResponse("shout"))
    assert served.text == "SHOUT"
    assert served.headers["content-type"] == "text/plain; charset=utf-8"


def test_json_with_lone_surrogates_is_escaped_not_a_crash() -> None:
    assert JSONResponse({"text": "\ud800"}).body == b'{"text":"\\ud800"}'
