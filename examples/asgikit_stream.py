"""``Hello``, ``, ``, ``world!`` one second apart with asgikit, like ``asgi_stream.py``.

`StreamingResponse` sends each item the generator yields as one
``http.response.body`` message with ``more_body=True`` and ends with an empty one; it
also stops the generator if the client disconnects (which ``asgi_stream.py`` does not
notice until its next ``send``).
Run it with ``uvicorn --app-dir examples asgikit_stream:router``;
``ASGI_STREAM_DELAY=0.2`` shortens the pause.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import anyio

from asgikit import Request, Router, StreamingResponse

PIECES = ["Hello", ", ", "world!"]


def make_router(delay: float = 1.0) -> Router:
    """The streaming app, pausing `delay` seconds between pieces."""
    router = Router()

    @router.get("/")
    async def stream(request: Request) -> StreamingResponse:
        async def pieces() -> AsyncIterator[str]:
            for index, piece in enumerate(PIECES):
                if index:
                    await anyio.sleep(delay)
                yield piece

        return StreamingResponse(pieces(), media_type="text/plain")

    return router


router = make_router(float(os.environ.get("ASGI_STREAM_DELAY", "1.0")))
