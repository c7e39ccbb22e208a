"""CORSMiddleware: preflights, simple requests, credentials and Vary, per the Fetch standard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from helpers import assert_passes_through

from asgikit import Middleware, PlainTextResponse, Request, Response, Router
from asgikit.middleware import CORSMiddleware
from asgikit.middleware.cors import parse_header_list
from asgikit.testing import TestClient
from asgikit.types import Receive, Scope, Send

APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.net"


def make_client(**options: Any) -> TestClient:
    router = Router(middleware=[Middleware(CORSMiddleware, **options)])

    @router.route("/items", methods=["GET", "POST", "DELETE"])
    async def items(request: Request) -> Response:
        return PlainTextResponse("items", headers={"x-total": "3"})

    @router.get("/varied")
    async def varied(request: Request) -> Response:
        return PlainTextResponse("varied", headers={"vary": "Accept-Language"})

    return TestClient(router)


def preflight(
    client: TestClient, origin: str, method: str = "GET", headers: str | None = None
) -> Any:
    request_headers = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        request_headers["access-control-request-headers"] = headers
    return client.options("/items", headers=request_headers)


def vary_items(response: Any) -> list[str]:
    return [item.lower() for item in parse_header_list(response.headers.get("vary", ""))]


# ------------------------------------------------------------------ preflight


def test_preflight_for_allowed_origin_method_and_headers() -> None:
    with make_client(
        allow_origins=[APP_ORIGIN],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "X-Request-Id"],
        max_age=1234,
    ) as client:
        response = preflight(client, APP_ORIGIN, "POST", "authorization, x-request-id")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert set(parse_header_list(response.headers["access-control-allow-methods"])) == {
        "GET",
        "POST",
    }
    allowed_headers = parse_header_list(response.headers["access-control-allow-headers"])
    assert {"authorization", "x-request-id", "content-type"} <= set(allowed_headers)
    assert response.headers["access-control-max-age"] == "1234"
    assert "origin" in vary_items(response)
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_is_answered_even_without_an_options_route() -> None:
    with make_client(allow_origins=["*"]) as client:
        response = preflight(client, APP_ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "origin" not in vary_items(response)


def test_preflight_from_disallowed_origin_is_400_without_allow_headers() -> None:
    with make_client(allow_origins=[APP_ORIGIN], allow_methods=["GET"]) as client:
        response = preflight(client, EVIL_ORIGIN)
    assert response.status_code == 400
    assert "origin" in response.json()["detail"]
    assert not [name for name in response.headers if name.startswith("access-control-allow")]
    assert "origin" in vary_items(response)


def test_preflight_for_disallowed_method_is_400() -> None:
    with make_client(allow_origins=[APP_ORIGIN], allow_methods=["GET"]) as client:
        response = preflight(client, APP_ORIGIN, "DELETE")
    assert response.status_code == 400
    assert "DELETE" in response.json()["detail"]
    assert "access-control-allow-origin" not in response.headers


def test_preflight_for_disallowed_header_is_400() -> None:
    with make_client(allow_origins=[APP_ORIGIN], allow_headers=["x-ok"]) as client:
        response = preflight(client, APP_ORIGIN, "GET", "X-OK, X-Secret")
    assert response.status_code == 400
    assert "x-secret" in response.json()["detail"]
    assert "access-control-allow-origin" not in response.headers


def test_safelisted_headers_are_always_allowed() -> None:
    with make_client(allow_origins=[APP_ORIGIN]) as client:
        response = preflight(client, APP_ORIGIN, "GET", "Content-Type, Accept")
    assert response.status_code == 200


def test_wildcard_methods_and_headers_echo_the_request() -> None:
    with make_client(
        allow_origins=[APP_ORIGIN], allow_methods=["*"], allow_headers=["*"]
    ) as client:
        response = preflight(client, APP_ORIGIN, "PATCH", "X-Anything, X-Else")
    assert response.status_code == 200
    assert response.headers["access-control-allow-methods"] == "PATCH"
    assert response.headers["access-control-allow-headers"] == "x-anything, x-else"


def test_options_without_request_method_is_not_a_preflight() -> None:
    with make_client(allow_origins=[APP_ORIGIN]) as client:
        response = client.options("/items", headers={"origin": APP_ORIGIN})
    assert response.status_code == 405  # the route table answered, not the middleware
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


# ------------------------------------------------------------------ simple / actual requests


def test_simple_request_from_allowed_origin() -> None:
    with make_client(allow_origins=[APP_ORIGIN], expose_headers=["X-Total"]) as client:
        response = client.get("/items", headers={"origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.text == "items"
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-expose-headers"] == "X-Total"
    assert "origin" in vary_items(response)


def test_simple_request_from_disallowed_origin_gets_no_allow_origin() -> None:
    with make_client(allow_origins=[APP_ORIGIN], expose_headers=["X-Total"]) as client:
        response = client.get("/items", headers={"origin": EVIL_ORIGIN})
    assert response.status_code == 200  # the browser, not the server, blocks the read
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-expose-headers" not in response.headers
    assert "origin" in vary_items(response)


def test_request_without_origin_gets_no_cors_headers() -> None:
    with make_client(allow_origins=[APP_ORIGIN]) as client:
        response = client.get("/items")
    assert response.text == "items"
    assert "access-control-allow-origin" not in response.headers
    # The answer to a CORS request would differ, so caches must key on Origin.
    assert "origin" in vary_items(response)


def test_allow_all_without_credentials_answers_star_without_vary() -> None:
    with make_client(allow_origins=["*"]) as client:
        response = client.get("/items", headers={"origin": EVIL_ORIGIN})
        plain = client.get("/items")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "origin" not in vary_items(response)
    assert "access-control-allow-origin" not in plain.headers
    assert "vary" not in plain.headers


def test_credentials_with_allow_all_never_reflect_an_arbitrary_origin() -> None:
    with make_client(allow_origins=["*"], allow_credentials=True) as client:
        response = client.get("/items", headers={"origin": EVIL_ORIGIN})
        flight = preflight(client, EVIL_ORIGIN)
    for answer in (response, flight):
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers


def test_credentials_go_to_named_origins_even_beside_allow_all() -> None:
    with make_client(allow_origins=["*", APP_ORIGIN], allow_credentials=True) as client:
        response = client.get("/items", headers={"origin": APP_ORIGIN})
        flight = preflight(client, APP_ORIGIN)
    for answer in (response, flight):
        assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "origin" in vary_items(answer)


def test_credentials_never_reflect_a_disallowed_origin() -> None:
    with make_client(allow_origins=[APP_ORIGIN], allow_credentials=True) as client:
        response = client.get("/items", headers={"origin": EVIL_ORIGIN})
        flight = preflight(client, EVIL_ORIGIN)
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert flight.status_code == 400
    assert "access-control-allow-credentials" not in flight.headers


def test_origin_regex_must_match_fully() -> None:
    pattern = r"https://[a-z]+\.example\.com"
    with make_client(allow_origin_regex=pattern) as client:
        good = client.get("/items", headers={"origin": "https://api.example.com"})
        suffixed = client.get("/items", headers={"origin": "https://api.example.com.evil.net"})
        prefixed = client.get("/items", headers={"origin": "http://x.https://a.example.com"})
    assert good.headers["access-control-allow-origin"] == "https://api.example.com"
    assert "access-control-allow-origin" not in suffixed.headers
    assert "access-control-allow-origin" not in prefixed.headers


def test_existing_vary_is_extended_not_replaced() -> None:
    with make_client(allow_origins=[APP_ORIGIN]) as client:
        response = client.get("/varied", headers={"origin": APP_ORIGIN})
    assert vary_items(response) == ["accept-language", "origin"]


def test_is_allowed_origin_combines_list_and_regex() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    cors = CORSMiddleware(
        app, allow_origins=[APP_ORIGIN], allow_origin_regex=re.compile(r"https://.*\.test")
    )
    assert cors.is_allowed_origin(APP_ORIGIN)
    assert cors.is_allowed_origin("https://a.test")
    assert not cors.is_allowed_origin("https://a.test.com")
    assert not cors.is_allowed_origin("null")


def test_a_bare_string_option_is_a_comma_separated_list() -> None:
    with make_client(allow_origins=APP_ORIGIN, allow_methods="get, post") as client:
        response = preflight(client, APP_ORIGIN, "POST")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    ("value", "items"),
    [("a, b,,c ", ["a", "b", "c"]), ("", []), (" , ", []), ("X-Token", ["X-Token"])],
)
def test_parse_header_list(value: str, items: list[str]) -> None:
    assert parse_header_list(value) == items


def test_bad_options_raise() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="max_age"):
        CORSMiddleware(app, max_age=-1)
    with pytest.raises(TypeError, match="allow_origins"):
        CORSMiddleware(app, allow_origins=[None])  # type: ignore[list-item]


# ------------------------------------------------------------------ other scopes


@pytest.mark.anyio
@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
async def test_other_scopes_pass_through_untouched(scope_type: str) -> None:
    # Hand-written: a minimal scope of that type, to be handed on as it is.
    scope: Scope = {"type": scope_type, "headers": [(b"origin", EVIL_ORIGIN.encode())]}
    await assert_passes_through(lambda app: CORSMiddleware(app, allow_origins=[APP_ORIGIN]), scope)
