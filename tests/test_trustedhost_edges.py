"""`TrustedHostMiddleware` configuration mistakes and hostile traffic."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Recorder, http_scope, receive_body

from asgikit.middleware import TrustedHostMiddleware
from asgikit.middleware.trustedhost import _CHECKED_HOSTS_SIZE
from asgikit.types import Receive, Scope, Send


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def status_for(middleware: Any, host: bytes) -> int:
    sent = Recorder()
    await middleware(http_scope(headers=[(b"host", host)]), receive_body(), sent)
    return int(sent.messages[0]["status"])


def test_one_host_may_be_given_as_a_string() -> None:
    middleware = TrustedHostMiddleware(ok_app, allowed_hosts="api.example.com")
    assert middleware.allowed_hosts == ("api.example.com",)
    assert middleware.is_allowed_host("api.example.com")
    assert not middleware.is_allowed_host("a.api.example.com")


def test_entries_that_are_not_host_patterns_are_refused() -> None:
    with pytest.raises(TypeError, match="must be str, not bytes"):
        TrustedHostMiddleware(ok_app, allowed_hosts=[b"example.com"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="must not be empty"):
        TrustedHostMiddleware(ok_app, allowed_hosts=[" "])


def test_a_fully_qualified_pattern_matches_with_or_without_its_dot() -> None:
    middleware = TrustedHostMiddleware(ok_app, allowed_hosts=["Example.COM."])
    assert middleware.is_allowed_host("example.com")


def test_a_wildcard_allows_any_host_even_odd_ones() -> None:
    middleware = TrustedHostMiddleware(ok_app, allowed_hosts=["*"])
    assert middleware.is_allowed_host("evil.com/x")


@pytest.mark.anyio
async def test_many_distinct_hosts_cannot_grow_the_cache_or_change_answers() -> None:
    middleware = TrustedHostMiddleware(ok_app, allowed_hosts=["*.example.com"])
    for index in range(_CHECKED_HOSTS_SIZE + 10):
        assert await status_for(middleware, b"h%d.attacker.net" % index) == 400
    assert len(middleware.checked_hosts) == _CHECKED_HOSTS_SIZE
    assert await status_for(middleware, b"api.example.com") == 200  # not cached, still right
    assert await status_for(middleware, b"h5.attacker.net") == 400
