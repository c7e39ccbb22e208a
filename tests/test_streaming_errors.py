"""A stream that fails half-way (an item JSON cannot encode, an iterator that raises).

After ``http.response.start`` there is no status left to change: the error propagates
(the router logs it, the server aborts the connection, so the client sees an incomplete
body), the iterator is closed (its ``finally`` runs) and ``background`` does not run. On
a server that announces no ASGI ``spec_version`` (daphne, which would otherwise leave the
client waiting for good) the body is ended first. The same through real servers:
tests/servers/test_hostile_json.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from helpers import Recorder, http_scope, never_disconnects

from asgikit import (
    BackgroundTask,
    EventSourceResponse,
    NDJSONResponse,
    Router,
    StreamingResponse,
)
from asgikit.testing import AsyncTestClient

pytestmark = pytest.mark.anyio


def daphne_scope() -> dict[str, Any]:
    """An ``http`` scope as daphne builds it: no ASGI ``spec_version`` (so hand-edited)."""
    scope = http_scope()
    scope["asgi"] = {"version": "3.0"}
    return scope


class Source:
    """Two good items, then ``bad``, then one more; records its ``finally``."""

    def __init__(self, bad: Any) -> None:
        self.bad = bad
        self.closed = False
        self.background_ran = False

    async def items(self) -> AsyncIterator[Any]:
        try:
            yield {"i": 0}
            await anyio.sleep(0)
            yield {"i": 1}
            yield self.bad
            yield {"i": 3}
        finally:
            self.closed = True

    def sync_items(self) -> Iterator[Any]:  # iterated in the thread pool
        try:
            yield {"i": 0}
            yield {"i": 1}
            yield self.bad
            yield {"i": 3}
        finally:
            self.closed = True

    def record_background(self) -> None:
        self.background_ran = True


UNENCODABLE = [
    pytest.param(float("nan"), ValueError, id="nan"),
    pytest.param(float("inf"), ValueError, id="inf"),
    pytest.param(object(), TypeError, id="object"),
]
GOOD_NDJSON = [b'{"i":0}\n', b'{"i":1}\n']
GOOD_SSE = [b'data: {"i":0}\n\n', b'data: {"i":1}\n\n']


def respond(kind: str, source: Source, sync: bool) -> StreamingResponse:
    content = source.sync_items() if sync else source.items()
    background = BackgroundTask(source.record_background)
    if kind == "ndjson":
        return NDJSONResponse(content, background=background)
    return EventSourceResponse(content, ping=None, background=background)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", ["ndjson", "sse"])
@pytest.mark.parametrize(("bad", "error"), UNENCODABLE)
async def test_unencodable_item_propagates_and_leaves_the_body_unfinished(
    kind: str, sync: bool, bad: Any, error: type[Exception]
) -> None:
    source = Source(bad)
    send = Recorder()
    with pytest.raises(error):
        await respond(kind, source, sync)(http_scope(), never_disconnects, send)
    assert send.bodies == (GOOD_NDJSON if kind == "ndjson" else GOOD_SSE)
    assert send.messages[-1]["more_body"] is True  # unfinished: the server aborts it
    assert source.closed  # the iterator's finally ran
    assert not source.background_ran


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", ["ndjson", "sse"])
@pytest.mark.parametrize(("bad", "error"), UNENCODABLE)
async def test_without_a_spec_version_the_body_is_ended_before_the_error(
    kind: str, sync: bool, bad: Any, error: type[Exception]
) -> None:
    source = Source(bad)
    send = Recorder()
    with pytest.raises(error):
        await respond(kind, source, sync)(daphne_scope(), never_disconnects, send)
    good = GOOD_NDJSON if kind == "ndjson" else GOOD_SSE
    assert send.bodies == [*good, b""]
    assert send.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert source.closed
    assert not source.background_ran


async def test_a_failing_end_does_not_hide_the_error() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("model crashed")

    send = Recorder(fail_on_body=1)  # the end fails: the client left meanwhile
    with pytest.raises(RuntimeError, match="model crashed"):
        await StreamingResponse(broken())(daphne_scope(), never_disconnects, send)
    assert send.bodies == [b"partial"]


async def test_an_iterator_error_through_the_router_and_the_test_client() -> None:
    source = Source(float("nan"))
    router = Router()
    router.add_route("/rows", lambda request: respond("ndjson", source, False), methods=["GET"])
    lines: list[str] = []
    async with AsyncTestClient(router) as client:
        with pytest.raises(ValueError, match="Out of range float values"):
            async with client.stream("GET", "/rows") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    lines.append(line)
    assert lines == ['{"i":0}', '{"i":1}']
    assert source.closed and not source.background_ran
