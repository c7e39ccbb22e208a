"""An application as a user writes it: routes, lifespan, errors, mounts, middleware."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from typing_extensions import assert_type

from asgikit import (
    URL,
    BackgroundTask,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    Middleware,
    Mount,
    NoMatchFound,
    PlainTextResponse,
    RedirectResponse,
    Request,
    Response,
    Route,
    Router,
    State,
    WebSocket,
    WebSocketDisconnect,
    WebSocketRoute,
)
from asgikit.middleware import (
    ConcurrencyLimitMiddleware,
    CORSMiddleware,
    GZipMiddleware,
    SessionMiddleware,
    TimeoutMiddleware,
    TrustedHostMiddleware,
)
from asgikit.staticfiles import StaticFiles


@contextlib.asynccontextmanager
async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
    yield {"model": {"cat": 0.9}}


router = Router(
    lifespan=lifespan,
    middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=["example.com"]),
        Middleware(CORSMiddleware, allow_origins=["https://example.com"]),
        Middleware(GZipMiddleware, minimum_size=500),
        Middleware(SessionMiddleware, secret_key="change me"),
        Middleware(TimeoutMiddleware, timeout=10.0),
        Middleware(ConcurrencyLimitMiddleware, max_concurrency=64, max_queue=256),
    ],
)


@router.get("/labels/{label}", name="label")
async def score(request: Request) -> dict[str, float]:
    label: str = request.path_params["label"]
    state = request.state
    assert_type(state, State)
    model: dict[str, float] = state.model
    if label not in model:
        raise HTTPException(404, f"unknown label {label!r}")
    return {label: model[label]}


@router.post("/echo")
async def echo(request: Request) -> JSONResponse:
    payload: Any = await request.json(max_size=1_000_000)
    body = await request.body()
    assert_type(body, bytes)
    return JSONResponse({"got": payload}, status_code=201, headers={"x-size": str(len(body))})


@router.get("/items/{item_id:uuid}")
def sync_endpoint(request: Request) -> Response:  # a plain def runs in the thread pool
    item_id: uuid.UUID = request.path_params["item_id"]
    limit = request.query_params.get("limit", "10")
    assert_type(request.url, URL)
    return PlainTextResponse(f"{item_id} {limit} {request.headers.get('user-agent', '')}")


@router.get("/")
async def home(request: Request) -> HTMLResponse:
    return HTMLResponse("<h1>hi</h1>", background=BackgroundTask(print, "served"))


@router.get("/old")
async def old(request: Request) -> RedirectResponse:
    url = request.url_for("label", label="cat")
    assert_type(url, URL)
    return RedirectResponse(str(url), status_code=308)


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            assert_type(text, str)
            await websocket.send_json({"echo": text})
    except WebSocketDisconnect as exc:
        assert_type(exc.code, int)


async def not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "missing"}, status_code=404)


async def health(request: Request) -> str:
    return "ok"


async def socket(websocket: WebSocket) -> None:
    await websocket.close()


api = Router([Route("/health", health, methods=["GET"], name="health")])
app = Router(
    [
        Mount("/api", api, name="api"),
        Mount("/static", StaticFiles(directory="."), name="static"),
        WebSocketRoute("/socket", socket),
    ],
    exception_handlers={404: not_found},
    redirect_slashes=True,
)
app.add_route("/health", health, methods=["GET"])
app.mount("/v2", router, name="v2")

path = app.url_path_for("api:health")
assert_type(path, str)
with contextlib.suppress(NoMatchFound):
    app.url_path_for("nope")
