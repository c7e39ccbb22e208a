"""asgikit: a small, fast, typed ASGI toolkit for serving machine-learning models.

>>> from asgikit import Router
>>> router = Router()
>>> @router.get("/hello")
... async def hello(request):
...     return "Hello, world!"

Serve with any ASGI server: ``uvicorn app:router``.
"""

from asgikit._chain import Middleware
from asgikit.background import BackgroundTask, BackgroundTasks
from asgikit.datastructures import URL, FormData, Headers, QueryParams, State, UploadFile
from asgikit.exceptions import ClientDisconnect, HTTPException, NoMatchFound
from asgikit.files import FileResponse
from asgikit.forms import MultipartPart
from asgikit.requests import Request
from asgikit.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from asgikit.routing import Mount, Route, Router, WebSocketRoute
from asgikit.streaming import (
    EventSourceResponse,
    NDJSONResponse,
    ServerSentEvent,
    StreamingResponse,
)
from asgikit.websockets import WebSocket, WebSocketDisconnect

__version__ = "0.1.0"

__all__ = [
    "URL",
    "BackgroundTask",
    "BackgroundTasks",
    "ClientDisconnect",
    "EventSourceResponse",
    "FileResponse",
    "FormData",
    "HTMLResponse",
    "HTTPException",
    "Headers",
    "JSONResponse",
    "Middleware",
    "Mount",
    "MultipartPart",
    "NDJSONResponse",
    "NoMatchFound",
    "PlainTextResponse",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "Response",
    "Route",
    "Router",
    "ServerSentEvent",
    "State",
    "StreamingResponse",
    "UploadFile",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketRoute",
    "__version__",
]
