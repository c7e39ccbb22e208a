"""The Ray Serve recipe (examples/ray_serve_app.py) run as documented, on a local Ray.

Marked ``ray``: deselected by default; ``make test-ray`` installs ``ray[serve]`` and runs
these. Skipped when ``ray[serve]`` is not installed. The driver
(``python examples/ray_serve_app.py --port N``) runs in its own process group on
127.0.0.1 and is stopped by its PID (SIGTERM: it shuts Serve and Ray down).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

pytestmark = pytest.mark.ray

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (make test-ray)")
pytest.importorskip("numpy")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Ray hands the app an empty scope["state"] (its uvicorn-based lifespan keeps the state
# elsewhere); the router then falls back on its own lifespan state.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def serve_url() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "ray_serve_app.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # Ray's own processes share the driver's process group
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        anyio.run(_wait_for_serving, process, seen)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def _wait_for_serving(process: subprocess.Popen[str], seen: list[str]) -> None:
    """Read the driver's output until it says it serves (at most 300 s)."""
    assert process.stdout is not None
    with anyio.fail_after(300):  # a local Ray, two replicas, training in each
        while True:
            line = await anyio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
            seen.append(line)
            if line.startswith("serving on"):
                break
            if not line and process.poll() is not None:
                raise AssertionError("the Ray driver exited:\n" + "".join(seen[-40:]))
    # Keep draining the driver's output so Ray's logging never blocks on a full pipe.
    drain = process.stdout
    threading.Thread(target=lambda: [None for _ in drain], daemon=True).start()


def replicas_answering(base: str) -> dict[str, bool]:
    """Rounds of 32 concurrent ``GET /replica`` until both replicas answered (bounded)."""
    answers: dict[str, bool] = {}

    async def main() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def one() -> None:
                body = (await client.get("/replica")).json()
                answers[body["replica"]] = body["models_loaded"]

            for _ in range(20):
                async with anyio.create_task_group() as group:
                    for _ in range(32):
                        group.start_soon(one)
                if len(answers) >= 2:
                    return

    anyio.run(main)
    return answers


def test_two_replicas_answer(serve_url: str) -> None:
    assert len(replicas_answering(serve_url)) == 2


def test_each_replica_runs_the_lifespan_and_state_reaches_requests(serve_url: str) -> None:
    answers = replicas_answering(serve_url)
    assert all(answers.values())
    ready = httpx.get(f"{serve_url}/readyz", timeout=30).json()
    assert ready["status"] == "ready" and ready["classifier_accuracy"] > 0.8


def test_demo_page_and_probes(serve_url: str) -> None:
    page = httpx.get(f"{serve_url}/", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{serve_url}/healthz", timeout=30).json() == {"status": "ok"}


def test_predict_is_batched_per_replica(serve_url: str) -> None:
    texts = ["for key, value in sorted(items.items()):", "Return the number of items."] * 16
    results: list[httpx.Response] = []

    async def main() -> None:
        async with httpx.AsyncClient(base_url=serve_url, timeout=30) as client:

            async def one(text: str) -> None:
                results.append(await client.post("/predict", json={"text": text}))

            async with anyio.create_task_group() as group:
                for text in texts:
                    group.start_soon(one, text)

    anyio.run(main)
    assert [r.status_code for r in results] == [200] * len(texts)
    labels = {r.json()["label"] for r in results}
    assert labels == {"code", "prose"}
    # Bad input is still a clear 4xx through Ray's proxy.
    bad = httpx.post(f"{serve_url}/predict", json={"txt": "x"}, timeout=30)
    assert bad.status_code == 422


def test_generate_streams_through_the_proxy(serve_url: str) -> None:
    with httpx.Client(base_url=serve_url, timeout=30) as client:
        params = {"prompt": "Return the", "max_tokens": 2000}
        with client.stream("GET", "/generate", params=params) as response:
            assert response.headers["content-type"] == "text/event-stream"
            tokens = 0
            for line in response.iter_lines():
                assert line != "event: done"  # we leave long before the end
                if line == "event: token":
                    tokens += 1
                    if tokens == 3:
                        break  # leaving closes the stream: the replica stops generating
        assert tokens == 3
        short = client.get("/generate", params={"prompt": "Return the", "max_tokens": 5})
        assert short.text.count("event: token\n") == 5
        assert "event: done\n" in short.text
