"""SessionMiddleware: signed timestamped cookies, change detection, expiry, flags."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import assert_passes_through, receive_nothing, send_nothing, websocket_scope

from asgikit import Middleware, Request, Router
from asgikit.middleware import SessionMiddleware
from asgikit.middleware.sessions import sign_session, unsign_session
from asgikit.testing import TestClient
from asgikit.types import Receive, Scope, Send

SECRET = "test-secret-key"


def make_client(**options: Any) -> TestClient:
    options.setdefault("secret_key", SECRET)
    router = Router(middleware=[Middleware(SessionMiddleware, **options)])

    @router.get("/session")
    async def read(request: Request) -> dict[str, Any]:
        return request.session

    @router.post("/session")
    async def update(request: Request) -> dict[str, Any]:
        request.session.update(await request.json())
        return request.session

    @router.post("/append")
    async def append(request: Request) -> dict[str, Any]:
        request.session["items"].append(len(request.session["items"]))
        return request.session

    @router.delete("/session")
    async def clear(request: Request) -> None:
        request.session.clear()

    @router.post("/unserialisable")
    async def unserialisable(request: Request) -> None:
        request.session["when"] = object()

    return TestClient(router)


def set_cookie(response: Any) -> str | None:
    value: str | None = response.headers.get("set-cookie")
    return value


def test_session_round_trips_through_the_cookie() -> None:
    with make_client() as client:
        response = client.post("/session", json={"user": "ada", "n": 1})
        assert response.json() == {"user": "ada", "n": 1}
        cookie = set_cookie(response)
        assert cookie is not None and cookie.startswith("session=")
        assert client.get("/session").json() == {"user": "ada", "n": 1}


def test_default_cookie_attributes() -> None:
    with make_client() as client:
        cookie = set_cookie(client.post("/session", json={"a": 1}))
    assert cookie is not None
    attributes = [part.strip() for part in cookie.split(";")[1:]]
    assert set(attributes) == {"Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=1209600"}


def test_configured_cookie_attributes() -> None:
    with make_client(
        session_cookie="sid",
        max_age=60,
        same_site="strict",
        https_only=True,
        path="/app",
        domain="example.com",
        http_only=False,
    ) as client:
        cookie = set_cookie(client.post("/session", json={"a": 1}))
    assert cookie is not None and cookie.startswith("sid=")
    attributes = {part.strip() for part in cookie.split(";")[1:]}
    assert attributes == {
        "Path=/app",
        "Domain=example.com",
        "SameSite=Strict",
        "Secure",
        "Max-Age=60",
    }


def test_max_age_none_makes_a_browser_session_cookie() -> None:
    with make_client(max_age=None) as client:
        cookie = set_cookie(client.post("/session", json={"a": 1}))
        assert client.get("/session").json() == {"a": 1}
    assert cookie is not None and "max-age" not in cookie.lower()


def test_cookie_is_written_only_when_the_session_changed() -> None:
    with make_client() as client:
        assert set_cookie(client.get("/session")) is None  # empty and untouched
        assert set_cookie(client.post("/session", json={"a": 1})) is not None
        assert set_cookie(client.get("/session")) is None  # read only
        assert set_cookie(client.post("/session", json={"a": 1})) is None  # same value
        assert set_cookie(client.post("/session", json={"a": 2})) is not None


def test_nested_mutation_counts_as_a_change() -> None:
    with make_client() as client:
        client.post("/session", json={"items": []})
        response = client.post("/append")
        assert set_cookie(response) is not None
        assert client.get("/session").json() == {"items": [0]}


def test_emptied_session_is_cleared_with_an_expired_cookie() -> None:
    with make_client() as client:
        client.post("/session", json={"a": 1})
        response = client.delete("/session")
        cookie = set_cookie(response)
        assert cookie is not None
        assert cookie.startswith("session=;")
        assert "Max-Age=0" in cookie
        assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in cookie
        assert client.get("/session").json() == {}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda value: value[:-2] + ("AA" if not value.endswith("AA") else "BB"),  # signature
        lambda value: "e30" + value[value.index(".") :],  # payload swapped for {}
        lambda value: value.split(".", 1)[0],  # signature stripped
        lambda value: "garbage",
        lambda value: value + ".extra",
        lambda value: value + "!!!!",  # not base64: skipped by a lenient decoder
        lambda value: value.replace("-", "+").replace("_", "/") + "=",  # another alphabet
    ],
)
def test_tampered_cookie_is_ignored(tamper: Any) -> None:
    value = sign_session({"user": "ada"}, SECRET, int(time.time()))
    with make_client() as client:
        response = client.get("/session", headers={"cookie": f"session={tamper(value)}"})
    assert response.status_code == 200
    assert response.json() == {}
    assert set_cookie(response) is None


def test_cookie_signed_with_another_key_is_ignored() -> None:
    value = sign_session({"user": "ada"}, "another-key", int(time.time()))
    with make_client() as client:
        response = client.get("/session", headers={"cookie": f"session={value}"})
    assert response.json() == {}


def test_expired_cookie_is_ignored() -> None:
    old = sign_session({"user": "ada"}, SECRET, int(time.time()) - 120)
    fresh = sign_session({"user": "ada"}, SECRET, int(time.time()) - 30)
    with make_client(max_age=60) as client:
        expired = client.get("/session", headers={"cookie": f"session={old}"})
        valid = client.get("/session", headers={"cookie": f"session={fresh}"})
    assert expired.json() == {}
    assert valid.json() == {"user": "ada"}


def test_unserialisable_session_value_is_a_type_error() -> None:
    with make_client() as client, pytest.raises(TypeError, match="JSON-serialisable"):
        client.post("/unserialisable")


# ------------------------------------------------------------------ signing, pure


def test_sign_and_unsign_round_trip() -> None:
    session = {"user": "ada", "roles": ["admin"], "nested": {"x": 1.5}, "text": "héllo"}
    value = sign_session(session, SECRET, timestamp=1_000)
    assert value.count(".") == 2
    assert unsign_session(value, SECRET, max_age=100, now=1_050) == session
    assert unsign_session(value, SECRET.encode(), max_age=None, now=10**9) == session


def test_unsign_enforces_max_age_on_the_signed_timestamp() -> None:
    value = sign_session({"a": 1}, SECRET, timestamp=1_000)
    assert unsign_session(value, SECRET, max_age=100, now=1_100) == {"a": 1}
    assert unsign_session(value, SECRET, max_age=100, now=1_101) is None


def test_unsign_refuses_a_timestamp_from_the_future() -> None:
    value = sign_session({"a": 1}, SECRET, timestamp=10_000)
    assert unsign_session(value, SECRET, max_age=100, now=1_000) is None


def test_unsign_refuses_a_signed_payload_that_is_not_an_object() -> None:
    # A valid signature over a JSON list: never a session.
    value = sign_session(["a", 1], SECRET, timestamp=1_000)  # type: ignore[arg-type]
    assert unsign_session(value, SECRET, max_age=None, now=1_000) is None


@pytest.mark.parametrize("value", ["", "...", "a.b.c", "é.é.é", "e30.MTAwMA.!!!!"])
def test_unsign_never_raises_on_garbage(value: str) -> None:
    assert unsign_session(value, SECRET, max_age=None, now=1_000) is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"secret_key": ""}, "secret_key"),
        ({"session_cookie": "bad name"}, "session_cookie"),
        ({"max_age": 0}, "max_age"),
        ({"same_site": "sometimes"}, "same_site"),
        ({"path": "/a;b"}, "path"),
    ],
)
def test_bad_options_raise_value_error(options: dict[str, Any], error: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    options = {"secret_key": SECRET, **options}
    with pytest.raises(ValueError, match=error):
        SessionMiddleware(app, **options)


# ------------------------------------------------------------------ other scopes


@pytest.mark.anyio
async def test_websocket_scope_gets_the_session() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["session"], receive, send))

    value = sign_session({"user": "ada"}, SECRET, int(time.time()))
    scope = websocket_scope(headers=[(b"cookie", f"session={value}".encode())])
    await SessionMiddleware(app, secret_key=SECRET)(scope, receive_nothing, send_nothing)
    assert seen == [({"user": "ada"}, receive_nothing, send_nothing)]


@pytest.mark.anyio
async def test_lifespan_passes_through() -> None:
    scope: Scope = {"type": "lifespan"}  # hand-written: a minimal lifespan scope
    await assert_passes_through(lambda app: SessionMiddleware(app, secret_key=SECRET), scope)
    assert "session" not in scope


def test_same_site_none_always_sets_secure() -> None:
    from asgikit import Middleware, Router
    from asgikit.middleware import SessionMiddleware
    from asgikit.testing import TestClient

    router = Router(
        middleware=[Middleware(SessionMiddleware, secret_key="k" * 32, same_site="none")]
    )

    @router.get("/")
    async def login(request: Request) -> str:
        request.session["user"] = "ann"
        return "ok"

    cookie = TestClient(router).get("/").headers["set-cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie
