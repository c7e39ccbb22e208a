"""How the test clients report an app's lifespan failures.

A test author must see why the app did not start or stop: the app's own exception when
it raised one, else a `RuntimeError` carrying the ``message`` of the ``failed`` event.
"""

from __future__ import annotations

from typing import Any

import pytest

from asgikit.testing import AsyncTestClient, TestClient
from asgikit.types import Receive, Scope, Send


def lifespan_app(*, on_startup: str = "complete", on_shutdown: str = "complete") -> Any:
    """An app whose lifespan answers startup/shutdown as told: ``complete``, ``failed``
    (with a message), ``failed+raise`` (then raises) or ``raise``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            raise AssertionError("no requests in these tests")
        for expected, behaviour in (("startup", on_startup), ("shutdown", on_shutdown)):
            assert (await receive())["type"] == f"lifespan.{expected}"
            if behaviour == "raise":
                raise ValueError(f"{expected} crashed")
            if behaviour.startswith("failed"):
                await send({"type": f"lifespan.{expected}.failed", "message": "no GPU"})
                if behaviour == "failed+raise":
                    raise ValueError(f"{expected} crashed after reporting")
                return
            await send({"type": f"lifespan.{expected}.complete"})

    return app


def test_a_startup_failure_with_a_message_is_a_runtime_error_saying_it() -> None:
    client = TestClient(lifespan_app(on_startup="failed"))
    with pytest.raises(RuntimeError, match="lifespan startup failed: no GPU"), client:
        pass


def test_the_apps_own_startup_exception_wins_over_the_message() -> None:
    client = TestClient(lifespan_app(on_startup="failed+raise"))
    with pytest.raises(ValueError, match="startup crashed after reporting"), client:
        pass


def test_a_shutdown_failure_with_a_message_is_a_runtime_error_saying_it() -> None:
    client = TestClient(lifespan_app(on_shutdown="failed"))
    client.__enter__()
    with pytest.raises(RuntimeError, match="lifespan shutdown failed: no GPU"):
        client.__exit__(None, None, None)


@pytest.mark.anyio
@pytest.mark.parametrize("on_shutdown", ["raise", "failed+raise"])
async def test_an_exception_during_shutdown_reaches_the_test(on_shutdown: str) -> None:
    client = AsyncTestClient(lifespan_app(on_shutdown=on_shutdown))
    await client.__aenter__()
    with pytest.raises(ValueError, match="shutdown crashed"):
        await client.__aexit__(None, None, None)


@pytest.mark.anyio
async def test_a_shutdown_error_does_not_hide_the_tests_own_error() -> None:
    with pytest.raises(KeyError, match="the test failed"):
        async with AsyncTestClient(lifespan_app(on_shutdown="raise")):
            raise KeyError("the test failed")
