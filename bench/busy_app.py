"""A worker's worst case for streaming: NDJSON over rows already in memory (the
iterator never awaits) beside a tiny ``GET /hello``. bench_streaming.py serves it with
uvicorn and measures /hello's latency while such streams are written.

    uvicorn --app-dir bench busy_app:router
"""

from __future__ import annotations

from asgikit import NDJSONResponse, PlainTextResponse, Request, Router

ROWS = [{"i": i, "token": f"token {i:06d}"} for i in range(100_000)]

router = Router()


@router.get("/hello")
async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


@router.get("/rows")
async def rows(request: Request) -> NDJSONResponse:
    count = int(request.query_params.get("n", str(len(ROWS))))
    return NDJSONResponse(ROWS[:count])
