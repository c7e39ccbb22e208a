"""The app the soak test serves: the ML example (examples/ml_serving.py) with tight load
limits, plus three endpoints that expose what the soak checks.

- ``GET /soak/sse?events=N``: N server-sent events 20 ms apart; an open/closed counter
  pair shows that every generator's ``finally`` ran, whether the client stayed or left.
  With ``blocking=1`` the generator is blocking code (a plain generator sleeping 20 ms per
  event, run in the thread pool): a client that leaves catches it mid-step.
- ``POST /soak/upload``: a multipart form (a client that aborts mid-body must leave no
  temporary file behind).
- ``GET /soak/counters``: the counters.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from ml_serving import make_router

from asgikit import EventSourceResponse, Request

COUNTERS = {"streams_opened": 0, "streams_closed": 0, "uploads": 0}

# Small limits so a burst of requests is shed (503 + Retry-After) instead of queued.
router = make_router(max_concurrency=4, max_queue=8)


@router.get("/soak/sse")
async def soak_sse(request: Request) -> EventSourceResponse:
    events = int(request.query_params.get("events", "20"))

    async def ticks() -> AsyncIterator[dict[str, int]]:
        COUNTERS["streams_opened"] += 1
        try:
            for index in range(events):
                yield {"tick": index}
                await anyio.sleep(0.02)
        finally:
            COUNTERS["streams_closed"] += 1

    def blocking_ticks() -> Iterator[dict[str, int]]:
        COUNTERS["streams_opened"] += 1
        try:
            for index in range(events):
                yield {"tick": index}
                time.sleep(0.02)  # the forward pass
        finally:
            COUNTERS["streams_closed"] += 1

    blocking = request.query_params.get("blocking") == "1"
    return EventSourceResponse(blocking_ticks() if blocking else ticks())


@router.post("/soak/upload")
async def soak_upload(request: Request) -> dict[str, Any]:
    form = await request.form(max_file_size=4 * 1024 * 1024)
    upload = form.get("file")
    COUNTERS["uploads"] += 1
    return {"size": getattr(upload, "size", None)}


@router.get("/soak/counters")
async def soak_counters(request: Request) -> dict[str, int]:
    return {**COUNTERS, **request.state.stats}
