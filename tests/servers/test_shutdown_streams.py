"""What SIGTERM does to a stream in flight, on every server started as the suite starts
them (default settings; docs/streaming.md, "Disconnects and shutdown, server by server").

uvicorn, granian and hypercorn let a stream that ends soon finish (uvicorn and granian
wait for any stream, hypercorn for its ``--graceful-timeout``, 3 s by default); daphne
cancels it at once. A stream that is cut still runs its generator's ``finally``, and the
client sees an incomplete body. Each test starts its own server: SIGTERM ends it.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest
from _server import SERVER_COMMANDS, RunningServer, serving

DEADLINE = 10.0  # seconds a server may take to exit (a hang detector, not a timing claim)
SHORT = 1.0  # seconds: a stream that ends within every grace period
LONG = 60.0  # seconds: a stream that outlasts hypercorn's 3 s default grace
CUT_AT_ONCE = {"daphne"}  # no grace period at all


def stream_through_sigterm(server: RunningServer, seconds: float) -> tuple[str, bytes]:
    """Start a stream, SIGTERM the server once the first chunk arrived, read the rest.

    Returns ``complete`` or ``cut`` (the body ended without its chunked terminator)
    and the body read."""
    with (
        httpx.Client(base_url=server.url, timeout=DEADLINE) as client,
        client.stream("GET", f"/shutdown-stream/{seconds}/stream") as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_bytes()
        body = next(chunks)
        server.process.send_signal(signal.SIGTERM)
        try:
            for chunk in chunks:
                body += chunk
        except httpx.RemoteProtocolError:
            return "cut", body
        return "complete", body


@pytest.mark.parametrize("name", sorted(SERVER_COMMANDS))
def test_a_stream_ending_within_the_grace_period(name: str, tmp_path: Path) -> None:
    env = {"CONFORMANCE_ENDINGS": str(tmp_path)}
    with serving(name, "conformance_app:app", tmp_dir=tmp_path, env=env) as server:
        outcome, body = stream_through_sigterm(server, SHORT)
        server.process.wait(timeout=DEADLINE)
    ending = (tmp_path / "stream").read_text()
    if name in CUT_AT_ONCE:
        assert (outcome, ending) == ("cut", "cut")  # cancelled; its finally ran
        assert not body.endswith(b"done\n")
    else:
        assert (outcome, ending) == ("complete", "completed")
        assert body.endswith(b"tick\ndone\n")


# hypercorn on asyncio starts its grace period only once ``asyncio.Server.wait_closed()``
# returns, and from Python 3.12.1 on that waits for every open connection: there, as on
# uvicorn and granian, a stream is waited for however long it runs.
HYPERCORN_WAITS = sys.version_info >= (3, 12, 1)
PAST_GRACE = 5.0  # seconds: longer than hypercorn's 3 s default grace, short for a test


@pytest.mark.parametrize("name", ["daphne", "hypercorn", "hypercorn-trio"])
def test_a_stream_outlasting_the_grace_period_is_cut_and_its_finally_runs(
    name: str, tmp_path: Path
) -> None:
    # (uvicorn and granian, by default, wait for such a stream however long it runs.)
    if name == "hypercorn" and HYPERCORN_WAITS:
        pytest.skip("hypercorn on asyncio waits for the stream on Python >= 3.12.1 (below)")
    env = {"CONFORMANCE_ENDINGS": str(tmp_path)}
    with serving(name, "conformance_app:app", tmp_dir=tmp_path, env=env) as server:
        outcome, body = stream_through_sigterm(server, LONG)
        server.process.wait(timeout=DEADLINE)
    assert outcome == "cut" and not body.endswith(b"done\n")
    assert (tmp_path / "stream").read_text() == "cut"  # cancelled; its finally ran


@pytest.mark.skipif(not HYPERCORN_WAITS, reason="before Python 3.12.1 hypercorn cuts it (above)")
def test_hypercorn_on_asyncio_waits_past_its_grace_period(tmp_path: Path) -> None:
    env = {"CONFORMANCE_ENDINGS": str(tmp_path)}
    with serving("hypercorn", "conformance_app:app", tmp_dir=tmp_path, env=env) as server:
        outcome, body = stream_through_sigterm(server, PAST_GRACE)
        server.process.wait(timeout=DEADLINE)
    assert (outcome, (tmp_path / "stream").read_text()) == ("complete", "completed")
    assert body.endswith(b"tick\ndone\n")
