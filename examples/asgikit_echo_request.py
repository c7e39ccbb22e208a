"""``Received {method} request to {path}`` with asgikit, like ``asgi_echo_request.py``.

One route catches every path (``{rest:path}`` also matches the empty remainder, so
``/`` is included) for the usual methods; ``HEAD`` comes with ``GET``.
Run it with ``uvicorn --app-dir examples asgikit_echo_request:router``.
"""

from __future__ import annotations

from asgikit import Request, Router

router = Router()


@router.route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def echo_request(request: Request) -> str:
    return f"Received {request.method} request to {request.url.path}"
