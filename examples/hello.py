"""The smallest asgikit app: a few routes, a lifespan and a middleware.

Run it with ``make demo`` or ``uvicorn --app-dir examples hello:router``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgikit import HTTPException, JSONResponse, Middleware, Request, Router
from asgikit.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    """A pure ASGI middleware: adds ``Server-Timing`` with the time to first byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - start) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", b"app;dur=%.3f" % elapsed_ms),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_timing)


@contextlib.asynccontextmanager
async def lifespan(router: Router) -> AsyncIterator[Mapping[str, Any]]:
    greetings = {"en": "Hello", "fr": "Bonjour", "de": "Hallo"}  # "load the model"
    yield {"greetings": greetings}


router = Router(lifespan=lifespan, middleware=[Middleware(ServerTiming)])


@router.get("/")
async def index(request: Request) -> dict[str, Any]:
    return {"routes": ["/hello", "/hello/{name}?lang=fr", "/users/{user_id:int}", "/echo"]}


@router.get("/hello")
async def hello(request: Request) -> str:
    return "Hello, world!"


@router.get("/hello/{name}", name="greet")
async def greet(request: Request) -> JSONResponse:
    lang = request.query_params.get("lang", "en")
    greetings: dict[str, str] = request.state.greetings
    if lang not in greetings:
        raise HTTPException(404, f"No greeting for language {lang!r}")
    name = request.path_params["name"]
    return JSONResponse({"greeting": f"{greetings[lang]}, {name}!"})


@router.get("/users/{user_id:int}", name="user")
async def user(request: Request) -> dict[str, Any]:
    user_id: int = request.path_params["user_id"]
    return {"id": user_id, "url": str(request.url_for("user", user_id=user_id))}


@router.post("/echo")
async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json(max_size=1_000_000))
