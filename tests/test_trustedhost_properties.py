"""Property tests (hypothesis): whatever the ``Host`` header, `TrustedHostMiddleware`
answers 200, 307 or 400 (never raises), and lets a request through only for an allowed
host; `https_url` builds a URL for any plain ``host[:port]`` and refuses the rest."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anyio
from helpers import Recorder, http_scope, receive_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgikit.middleware import TrustedHostMiddleware
from asgikit.middleware.httpsredirect import https_url
from asgikit.middleware.trustedhost import host_without_port
from asgikit.types import Receive, Scope, Send

PLAIN_HOSTS = {
    f"{prefix}{name}{port}".encode()
    for prefix in ("", "a.", "www.", "x.y.")
    for name in ("api.example.com", "models.example.com", "example.org")
    for port in ("", ":8000")
} | {b"[::1]", b"[::1]:8000"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = ["api.example.com", "*.models.example.com", "www.example.org"]

hosts = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda prefix, host, port: (prefix + host + port).encode(),
        st.sampled_from(["", "a.", "www.", "x.y.", "EVIL.com/", " ", "["]),
        st.sampled_from(["api.example.com", "models.example.com", "example.org", "::1", ""]),
        st.sampled_from(["", ":8000", ":", ".", "]:1", ":x", "/?", "@evil.com"]),
    ),
)


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def answer(middleware: Any, host: bytes) -> int:
    sent = Recorder()
    anyio.run(middleware, http_scope("/v1", headers=[(b"host", host)]), receive_body(), sent)
    return int(sent.messages[0]["status"])


@SETTINGS
@given(host=hosts)
def test_any_host_header_is_let_through_only_when_allowed(host: bytes) -> None:
    middleware = TrustedHostMiddleware(ok_app, allowed_hosts=ALLOWED)
    status = answer(middleware, host)
    assert status in (200, 307, 400)
    name = host_without_port(host.decode("latin-1"))
    if status == 200:
        assert (
            name == "api.example.com"
            or (name.endswith(".models.example.com") and "/" not in name and "@" not in name)
            or name == "www.example.org"
        )
    if status == 307:
        assert f"www.{name}" in ALLOWED
    assert answer(middleware, host) == status  # the cached answer is the same answer


@SETTINGS
@given(host=hosts)
def test_https_url_is_built_for_any_host_header(host: bytes) -> None:
    scope = {
        "type": "http",
        "scheme": "http",
        "path": "/v1",
        "query_string": b"q=1",
        "headers": [(b"host", host)],
    }
    try:
        url = https_url(scope)
    except ValueError as exc:  # not a plain host[:port]: no URL is built from it
        assert "Invalid host header" in str(exc)
        assert host not in PLAIN_HOSTS
        return
    assert url.startswith("https://") and url.endswith("/v1?q=1")
    # The host is the URL's authority, all of it: nothing moved into path or query.
    assert urlsplit(url).path == "/v1" and urlsplit(url).query == "q=1"
