"""Serving two small models with asgikit: batched predictions and streamed generation.

Both models are trained at startup, in the lifespan, on text that ships with Python
itself (the standard library's source), so the example needs no download and no network:

- a **classifier** that tells Python code from English prose. Character trigrams are
  hashed into 2,048 features, projected through a fixed random 2,048 x 1,024 ReLU layer,
  and read out by a ridge-regression layer fitted on ~4,000 lines. Like any neural
  network, one call costs about the same for 1 input as for 32 (the weights are read
  once per call), which is exactly when batching pays: ``POST /predict`` goes through a
  `Batcher`.
- a **character-level language model** (order-6 Markov chain over docstrings) whose
  ``GET /generate`` streams words as server-sent events and stops generating as soon as
  the client goes away.

Both models are deterministic: the same in every process and every worker (trigrams are
hashed with CRC-32, not the per-process salted ``hash()``).

Run it with ``make demo`` (``uvicorn --app-dir examples ml_serving:router``; ``make demo
PORT=8001 HOST=0.0.0.0`` to change where it listens) and open http://127.0.0.1:8000/ for a
page (``ml_demo.html``, plain HTML and JavaScript) that calls both endpoints, or::

    curl -s localhost:8000/predict -d '{"text": "for key, value in items.items():"}'
    curl -N 'localhost:8000/generate?prompt=Return%20the&max_tokens=40'

Requires numpy.
"""

from __future__ import annotations

import ast
import contextlib
import os
import random
import re
import sysconfig
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

# One BLAS thread per call: parallelism comes from asgikit's thread pool, and several
# multi-threaded matrix products at once oversubscribe the cores (10x slower here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from asgikit import (
    EventSourceResponse,
    FileResponse,
    HTTPException,
    JSONResponse,
    Middleware,
    Request,
    Router,
    ServerSentEvent,
)
from asgikit.middleware import ConcurrencyLimitMiddleware, TimeoutMiddleware
from asgikit.middleware.metrics import metrics_endpoint, register_batcher
from asgikit.serving import Batcher, run_in_threadpool

# Standard-library modules whose source is the training text.
MODULES = (
    "argparse",
    "calendar",
    "configparser",
    "csv",
    "difflib",
    "fractions",
    "functools",
    "gettext",
    "heapq",
    "inspect",
    "ipaddress",
    "pathlib",
    "pprint",
    "shutil",
    "statistics",
    "string",
    "tarfile",
    "textwrap",
    "typing",
    "zipfile",
)
LABELS = ("code", "prose")
FEATURES = 2048
HIDDEN = 1024


# --------------------------------------------------------------------------- data
def stdlib_sources() -> Iterator[str]:
    """The source text of `MODULES`, read from this Python's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in MODULES:
        path = stdlib / f"{name}.py"
        if path.exists():
            yield path.read_text(encoding="utf-8")


def docstrings(source: str) -> list[str]:
    """Every module, class and function docstring in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                found.append(text)
    return found


def labelled_lines(sources: Sequence[str]) -> tuple[list[str], list[int]]:
    """Lines of prose (from docstrings) and of code (everything else), labelled."""
    texts: list[str] = []
    labels: list[int] = []
    for source in sources:
        # An insertion-ordered set: a plain set's order follows the salted str hash, and
        # the training sample must be the same in every process.
        prose = dict.fromkeys(
            line.strip() for doc in docstrings(source) for line in doc.splitlines()
        )
        for line in prose:
            if len(line) >= 20 and not line.startswith((">>>", "...")):
                texts.append(line)
                labels.append(1)
        for raw in source.splitlines():
            line = raw.strip()
            if len(line) >= 20 and line not in prose and not line.startswith(("#", '"', "'")):
                texts.append(line)
                labels.append(0)
    return texts, labels


# --------------------------------------------------------------------------- classifier
def trigram_feature(trigram: str) -> int:
    """The feature index of a trigram: CRC-32, the same in every process.

    (The built-in ``hash()`` of a str is salted per process, so two workers would train
    two different models.)
    """
    return zlib.crc32(trigram.encode("utf-8")) % FEATURES


def featurize(texts: Sequence[str]) -> np.ndarray:
    """Hashed character-trigram counts, one L2-normalised row per text."""
    rows = np.zeros((len(texts), FEATURES), dtype=np.float32)
    for row, text in enumerate(texts):
        padded = f"  {text.lower()}  "
        for i in range(len(padded) - 2):
            rows[row, trigram_feature(padded[i : i + 3])] += 1.0
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    normalised: np.ndarray = rows / np.maximum(norms, 1e-6)
    return normalised


class TextClassifier:
    """Code-or-prose classifier: a random ReLU layer and a ridge-regression readout."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((FEATURES, HIDDEN), dtype=np.float32)
        self.projection /= np.float32(np.sqrt(FEATURES / 16))
        hidden = self._hidden(featurize(texts))
        targets = np.eye(len(LABELS), dtype=np.float32)[np.asarray(labels)]
        ridge = hidden.T @ hidden + 1.0 * np.eye(HIDDEN, dtype=np.float32)
        self.readout = np.linalg.solve(ridge, hidden.T @ targets).astype(np.float32)

    def _hidden(self, features: np.ndarray) -> np.ndarray:
        hidden: np.ndarray = np.maximum(features @ self.projection, 0.0)
        return hidden

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Label and probability for each text (one call for the whole batch)."""
        scores = self._hidden(featurize(texts)) @ self.readout
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores * 10.0)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return [
            {"label": LABELS[index], "probability": round(float(probabilities[row, index]), 4)}
            for row, index in enumerate(best)
        ]

    def accuracy(self, texts: Sequence[str], labels: Sequence[int]) -> float:
        """Share of ``texts`` labelled correctly."""
        predicted = [LABELS.index(p["label"]) for p in self.predict(list(texts))]
        return sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)


def train_classifier() -> tuple[TextClassifier, float]:
    """Fit the classifier on ~4,000 stdlib lines; return it with its hold-out accuracy."""
    texts, labels = labelled_lines(list(stdlib_sources()))
    rng = random.Random(0)
    order = list(range(len(texts)))
    rng.shuffle(order)
    train, test = order[:4000], order[4000:5000]
    model = TextClassifier([texts[i] for i in train], [labels[i] for i in train])
    return model, model.accuracy([texts[i] for i in test], [labels[i] for i in test])


# --------------------------------------------------------------------------- generator
class CharLanguageModel:
    """An order-``n`` character Markov chain: the next character given the last ``n``."""

    def __init__(self, text: str, order: int = 6) -> None:
        self.order = order
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for i in range(len(text) - order):
            counts[text[i : i + order]][text[i + order]] += 1
        self.table = {
            context: (list(counter), list(counter.values())) for context, counter in counts.items()
        }
        self.starts = [context for context in self.table if context[0] == " "]

    def words(self, prompt: str, max_tokens: int, seed: int) -> Iterator[str]:
        """Generate up to ``max_tokens`` words continuing ``prompt`` (blocking code)."""
        rng = random.Random(seed)
        context = (" " * self.order + prompt)[-self.order :]
        if context not in self.table:
            context = rng.choice(self.starts)
        word = ""
        produced = 0
        while produced < max_tokens:
            choices, weights = self.table.get(context) or self.table[rng.choice(self.starts)]
            char = rng.choices(choices, weights)[0]
            context = context[1:] + char
            if char == " " and word:
                yield word + " "
                produced += 1
                word = ""
            elif char != " ":
                word += char


def train_language_model() -> CharLanguageModel:
    text = " ".join(doc for source in stdlib_sources() for doc in docstrings(source))
    return CharLanguageModel(re.sub(r"\s+", " ", text))


MAX_TOKENS = 2_000  # per /generate request
DEMO_PAGE = Path(__file__).resolve().parent / "ml_demo.html"


# --------------------------------------------------------------------------- the app
def make_router(
    *,
    batching: bool = True,
    max_batch_size: int = 32,
    max_wait: float = 0.002,
    max_concurrency: int = 64,
    max_queue: int = 256,
    timeout: float = 10.0,
) -> Router:
    """The example application; ``batching=False`` gives the unbatched baseline."""

    # Prometheus metrics when prometheus-client is installed (the demo extra has it):
    # GET /metrics shows the batcher's queue depth, asgikit_batcher_queued{batcher=
    # "predict"}, what an autoscaler should scale on (docs/deployment-ray-k8s.md).
    metrics_registry = None
    with contextlib.suppress(ImportError):
        from prometheus_client import CollectorRegistry

        metrics_registry = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(router: Router) -> AsyncIterator[dict[str, Any]]:
        # Training is blocking numpy/Python work: keep the event loop free meanwhile.
        classifier, accuracy = await run_in_threadpool(train_classifier)
        language_model = await run_in_threadpool(train_language_model)
        stats = {"generated_tokens": 0, "aborted_generations": 0}
        async with Batcher(
            classifier.predict, max_batch_size=max_batch_size, max_wait=max_wait
        ) as batcher:
            if metrics_registry is not None:
                register_batcher(batcher, "predict", registry=metrics_registry)
            yield {
                "classifier": classifier,
                "accuracy": accuracy,
                "language_model": language_model,
                "batcher": batcher,
                "stats": stats,
            }

    # Probes and counters answer even when the model endpoints are saturated: they live
    # on the outer router; the model endpoints are mounted below it behind the limits.
    # The timeout is outermost, so time spent queued for a slot counts too.
    router = Router(lifespan=lifespan)
    models = Router()
    router.mount(
        "/",
        models,
        middleware=[
            Middleware(TimeoutMiddleware, timeout=timeout),
            Middleware(
                ConcurrencyLimitMiddleware, max_concurrency=max_concurrency, max_queue=max_queue
            ),
        ],
    )

    @router.get("/")
    async def demo_page(request: Request) -> FileResponse:
        """The demo page: classify a line, watch generated tokens stream in."""
        return FileResponse(DEMO_PAGE, media_type="text/html")

    @router.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the models are loaded (503 until the lifespan has run)."""
        state = request.state
        if not hasattr(state, "classifier"):
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "classifier_accuracy": state.accuracy})

    @models.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """``{"text": "..."}`` -> ``{"label": "code" | "prose", "probability": p}``."""
        payload = await request.json(max_size=65_536)
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise HTTPException(422, detail='send a JSON object with a non-empty "text" string')
        if batching:
            result: dict[str, Any] = await request.state.batcher(text)
        else:
            result = (await run_in_threadpool(request.state.classifier.predict, [text]))[0]
        return result

    @models.get("/generate")
    async def generate(request: Request) -> EventSourceResponse:
        """Stream up to ``max_tokens`` words after ``prompt`` as server-sent events.

        Events: ``token`` (``{"text": ...}``) per word, then ``done``. Each event's ``id``
        is the token index: a reconnecting client sends ``Last-Event-ID`` and generation
        resumes after it (same ``seed``, same text).
        """
        params = request.query_params
        prompt = params.get("prompt", "The ")
        try:
            max_tokens = int(params.get("max_tokens", "50"))
            seed = int(params.get("seed", "0"))
            resume_after = int(request.headers.get("last-event-id", "-1"))
        except ValueError:
            raise HTTPException(
                422, detail="max_tokens, seed and Last-Event-ID must be integers"
            ) from None
        if not 1 <= max_tokens <= MAX_TOKENS:
            raise HTTPException(422, detail=f"max_tokens must be between 1 and {MAX_TOKENS}")
        model: CharLanguageModel = request.state.language_model
        stats: dict[str, int] = request.state.stats

        def events() -> Iterator[ServerSentEvent]:
            # A plain generator: asgikit runs it in the thread pool, one token per hop,
            # and closes it when the client leaves, so generation stops right there.
            finished = False
            try:
                for index, word in enumerate(model.words(prompt, max_tokens, seed)):
                    stats["generated_tokens"] += 1
                    if index > resume_after:
                        yield ServerSentEvent({"text": word}, event="token", id=index)
                    elif index % 100 == 99:
                        # Replaying up to Last-Event-ID: yield now and then, so a client
                        # that leaves during the replay stops it too.
                        yield ServerSentEvent(comment="resuming")
                finished = True
                yield ServerSentEvent({"tokens": max_tokens}, event="done")
            finally:
                if not finished:
                    stats["aborted_generations"] += 1

        return EventSourceResponse(events())

    if metrics_registry is not None:
        router.add_route("/metrics", metrics_endpoint(metrics_registry), name="metrics")

    @router.get("/stats")
    async def generation_stats(request: Request) -> dict[str, int]:
        """Counters: tokens generated and generations aborted by a disconnect."""
        return dict(request.state.stats)

    return router


router = make_router()
