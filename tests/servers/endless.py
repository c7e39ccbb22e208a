"""The endless stream that both server apps serve (conformance_app.py and workers_app.py):
``GET /endless/{token}`` ticks until the client leaves or the server cancels it, then its
generator's ``finally`` records ``"closed"`` for the token, each app in its own place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from asgikit import Request, StreamingResponse


def endless_endpoint(
    record: Callable[[str, str], object], *, interval: float
) -> Callable[[Request], Awaitable[StreamingResponse]]:
    """An endpoint for ``/endless/{token}``: a ``tick`` line every ``interval`` seconds
    until the stream is closed, then ``record(token, "closed")``."""

    async def endless(request: Request) -> StreamingResponse:
        """Ticks until the client leaves or the server cancels it at shutdown."""
        token = request.path_params["token"]

        async def ticks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    await anyio.sleep(interval)
            finally:
                record(token, "closed")

        return StreamingResponse(ticks(), media_type="text/plain")

    return endless
