"""The ML serving example, driven through the test client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("numpy")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from ml_serving import make_router

from asgikit.testing import TestClient


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_router(timeout=30)) as client:  # entering trains the models
        yield client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["classifier_accuracy"] > 0.8


def test_readyz_is_503_without_lifespan() -> None:
    # Not entered: like a server without lifespan support, no models in the state.
    assert TestClient(make_router()).get("/readyz").status_code == 503


def test_predict_goes_through_the_batcher(client: TestClient) -> None:
    code = client.post("/predict", json={"text": "for key, value in sorted(items.items()):"})
    prose = client.post("/predict", json={"text": "Return the number of items in the list."})
    assert code.json()["label"] == "code"
    assert prose.json()["label"] == "prose"
    assert 0.5 <= code.json()["probability"] <= 1.0


def test_predict_rejects_bad_input(client: TestClient) -> None:
    response = client.post("/predict", json={"txt": "x"})
    assert response.status_code == 422
    assert "text" in response.json()["detail"]
    assert client.post("/predict", content=b"{not json").status_code == 400


def test_generate_streams_tokens_then_done(client: TestClient) -> None:
    response = client.get("/generate", params={"prompt": "Return the", "max_tokens": 5})
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.count("event: token\n") == 5
    assert "event: done\n" in response.text


def test_generate_resumes_after_last_event_id(client: TestClient) -> None:
    full = client.get("/generate", params={"max_tokens": 6, "seed": 3}).text
    resumed = client.get(
        "/generate", params={"max_tokens": 6, "seed": 3}, headers={"Last-Event-ID": "3"}
    ).text
    assert "id: 3\n" in full and "id: 3\n" not in resumed
    assert full.split("id: 4\n", 1)[1] == resumed.split("id: 4\n", 1)[1]


def test_generate_stops_when_client_leaves(client: TestClient) -> None:
    before = client.get("/stats").json()
    with client.stream("GET", "/generate", params={"max_tokens": 2_000}) as response:
        for line in response.iter_lines():
            if line.startswith("id: 3"):
                break
    for _ in range(500):  # the thread finishes its current token, then the generator closes
        after = client.get("/stats").json()
        if after["aborted_generations"] > before["aborted_generations"]:
            break
    assert after["aborted_generations"] == before["aborted_generations"] + 1
    assert after["generated_tokens"] - before["generated_tokens"] < 100


def test_too_many_tokens_is_a_422(client: TestClient) -> None:
    response = client.get("/generate", params={"max_tokens": 2_001})
    assert response.status_code == 422
    assert "between 1 and 2000" in response.json()["detail"]


def test_probes_answer_while_the_model_endpoints_are_saturated() -> None:
    import anyio

    from asgikit.testing import AsyncTestClient

    async def main() -> None:
        router = make_router(max_concurrency=1, max_queue=0)
        params = {"max_tokens": 2_000}
        async with (
            AsyncTestClient(router) as client,
            client.stream("GET", "/generate", params=params) as stream,
        ):
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("event: token")
            # The one model slot is taken: model endpoints shed, probes still answer.
            shed = await client.post("/predict", json={"text": "def f(): pass"})
            assert shed.status_code == 503
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).status_code == 200

    anyio.run(main)


def test_root_serves_the_demo_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "new EventSource(" in page and 'fetch("/predict"' in page
    for link in ('href="/healthz"', 'href="/readyz"', 'href="/stats"', 'href="/generate?'):
        assert link in page


TRAIN_AND_PREDICT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import ml_serving
classifier, accuracy = ml_serving.train_classifier()
texts = ["for key, value in sorted(items.items()):", "Return the number of items.", "x = 1"]
scores = classifier._hidden(ml_serving.featurize(texts)) @ classifier.readout
words = "".join(ml_serving.train_language_model().words("Return the", 20, seed=7))
print(json.dumps({"accuracy": accuracy, "scores": scores.tolist(), "words": words}))
"""


def test_models_are_the_same_in_two_processes() -> None:
    # Two processes with different str-hash salts train the same models, so two
    # workers (or two replicas) answer alike.
    import json
    import os
    import subprocess

    examples = str(Path(__file__).resolve().parent.parent / "examples")
    runs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        result = subprocess.run(
            [sys.executable, "-c", TRAIN_AND_PREDICT, examples],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    assert runs[0] == runs[1]
    assert runs[0]["accuracy"] > 0.8


def test_metrics_show_the_batcher_queue_depth(client: TestClient) -> None:
    pytest.importorskip("prometheus_client")
    client.post("/predict", json={"text": "x = 1"})
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert 'asgikit_batcher_queued{batcher="predict"} 0.0' in scrape.text
