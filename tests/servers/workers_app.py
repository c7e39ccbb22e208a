"""examples/ml_serving.py, mounted under a router that shows which worker answered.

The worker-process tests (test_workers.py) serve this with several workers: ``GET /pid``
names the answering process; the lifespan appends its PID to ``$WORKERS_DIR/lifespans``
(one line per startup); ``GET /slow/{token}`` streams 20 chunks (1 s) and
``GET /endless/{token}`` until it is stopped; their ``finally`` writes
``$WORKERS_DIR/ending-{token}``. Everything else is the example, unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import ml_serving  # examples/ is on PYTHONPATH
from endless import endless_endpoint
from uvicorn_worker import UvicornWorker

from asgikit import Request, Router, StreamingResponse

WORKERS_DIR = Path(os.environ.get("WORKERS_DIR", "."))
SLOW_CHUNKS = 20
GRACE = 3  # seconds; test_workers.py gives every server this grace period


class GracefulUvicornWorker(UvicornWorker):
    """gunicorn's uvicorn worker, cancelling requests that outlast the grace period.

    UvicornWorker does not set uvicorn's ``timeout_graceful_shutdown``: a stream still
    running at gunicorn's ``--graceful-timeout`` is SIGKILLed and its ``finally`` never
    runs. Cancelled a little earlier, its ``finally`` runs. (docs/deployment.md)
    """

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "timeout_graceful_shutdown": GRACE}


@contextlib.asynccontextmanager
async def lifespan(router: Router) -> AsyncIterator[None]:
    with (WORKERS_DIR / "lifespans").open("a") as log:
        log.write(f"{os.getpid()}\n")
    yield


app = Router(lifespan=lifespan)


@app.get("/pid")
async def pid(request: Request) -> dict[str, int]:
    return {"pid": os.getpid()}


def write_ending(token: str, ending: str) -> None:
    (WORKERS_DIR / f"ending-{token}").write_text(ending)


@app.get("/slow/{token}")
async def slow(request: Request) -> StreamingResponse:
    token = request.path_params["token"]

    async def chunks() -> AsyncIterator[bytes]:
        ending = "closed early"
        try:
            for index in range(SLOW_CHUNKS):
                yield f"chunk {index}\n".encode()
                await anyio.sleep(0.05)
            ending = "completed"
        finally:
            write_ending(token, ending)

    return StreamingResponse(chunks(), media_type="text/plain")


app.get("/endless/{token}")(endless_endpoint(write_ending, interval=0.05))


app.mount("/", ml_serving.make_router())
