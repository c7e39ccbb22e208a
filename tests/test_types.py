"""The public surface: every name of the API contract imports, is documented and typed."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import asgikit
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

CONTRACT = {
    "asgikit": [
        "Router", "Route", "Mount", "WebSocketRoute", "Middleware",
        "Request", "WebSocket", "WebSocketDisconnect", "UploadFile", "FormData", "Headers",
        "QueryParams", "URL", "State",
        "Response", "PlainTextResponse", "HTMLResponse", "JSONResponse", "RedirectResponse",
        "StreamingResponse", "FileResponse", "EventSourceResponse", "ServerSentEvent",
        "NDJSONResponse", "HTTPException", "BackgroundTask", "BackgroundTasks",
    ],
    "asgikit.testing": ["TestClient", "AsyncTestClient"],
    "asgikit.middleware": [
        "CORSMiddleware", "GZipMiddleware", "TrustedHostMiddleware", "HTTPSRedirectMiddleware",
        "SessionMiddleware", "ConcurrencyLimitMiddleware", "TimeoutMiddleware",
    ],
    "asgikit.staticfiles": ["StaticFiles"],
    "asgikit.serving": ["Batcher", "run_in_threadpool", "iterate_in_threadpool", "Overloaded"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(CONTRACT))
def test_contract_names_import_and_have_docstrings(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in CONTRACT[module_name]:
        value = getattr(module, name)
        assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"


def test_top_level_all_lists_exactly_importable_names() -> None:
    for name in asgikit.__all__:
        assert hasattr(asgikit, name), name
    assert set(CONTRACT["asgikit"]) <= set(asgikit.__all__)


def test_package_is_typed() -> None:
    assert (Path(asgikit.__file__).parent / "py.typed").exists()


def test_type_aliases_describe_plain_asgi_callables() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message: Message = await receive()
        await send({"type": "echo", "message": message})

    typed: ASGIApp = app  # a plain coroutine function is an ASGIApp
    assert inspect.iscoroutinefunction(typed)
