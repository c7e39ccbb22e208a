"""Hello, world with asgikit: the same answer as ``asgi_hello.py``, on ``GET /``.

The router builds the ``http.response.start`` and ``http.response.body`` messages from
the returned ``str`` (``text/plain; charset=utf-8``, with a ``content-length``).
Run it with ``uvicorn --app-dir examples asgikit_hello:router``.
"""

from __future__ import annotations

from asgikit import Request, Router

router = Router()


@router.get("/")
async def hello(request: Request) -> str:
    return "Hello, world!"
