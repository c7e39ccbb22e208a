"""`SessionMiddleware` at its edges: a session replaced by the app, a session that was
never stored, several cookies on one request, and a session too big for a browser."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asgikit import Middleware, Request, Router
from asgikit.middleware import SessionMiddleware
from asgikit.testing import TestClient
from asgikit.types import Receive, Scope, Send

SECRET = "edges-secret"


def make_client() -> TestClient:
    router = Router(middleware=[Middleware(SessionMiddleware, secret_key=SECRET)])

    @router.post("/session")
    async def update(request: Request) -> dict[str, Any]:
        request.session.update(await request.json())
        return request.session

    @router.get("/session")
    async def read(request: Request) -> dict[str, Any]:
        return request.session

    @router.delete("/session")
    async def clear(request: Request) -> None:
        request.session.clear()

    return TestClient(router)


def test_an_app_that_replaces_the_session_with_a_non_dict_is_told_so() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"] = ["not", "a", "dict"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(SessionMiddleware(app, secret_key=SECRET))
    with pytest.raises(TypeError, match="must stay a dict, not list"):
        client.get("/")


def test_clearing_a_session_that_was_never_stored_sets_no_cookie() -> None:
    with make_client() as client:
        response = client.delete("/session")
        assert response.status_code in (200, 204)
        assert "set-cookie" not in response.headers


def test_the_session_cookie_is_found_among_other_cookies() -> None:
    with make_client() as client:
        client.post("/session", json={"model": "tiny"})
        session = client.cookies["session"]
        client.cookies.clear()
        response = client.get(
            "/session", headers={"cookie": f"theme=dark; session={session}; lang=en"}
        )
        assert response.json() == {"model": "tiny"}


def test_a_session_too_big_for_browsers_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with make_client() as client, caplog.at_level(logging.WARNING):
        response = client.post("/session", json={"history": "x" * 5000})
        assert response.status_code == 200
    assert any("browsers drop cookies over" in record.getMessage() for record in caplog.records)
