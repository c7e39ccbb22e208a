"""The exception tree: every exception asgikit raises at you derives from `AsgikitError`.

::

    AsgikitError
    ├── HTTPException            answered as an HTTP error: {"detail": ...} with its status
    │   ├── Overloaded           503 + Retry-After: a queue is full (Batcher, load shedding);
    │   │                        importable from asgikit.serving too
    │   └── QueueTimeout         504: a Batcher call waited longer than max_queue_wait;
    │                            importable from asgikit.serving too
    ├── ClientDisconnect         the client left while the request body was being read;
    │                            the router ends the request quietly (nothing to answer)
    ├── WebSocketDisconnect      the WebSocket is closed (code, reason); importable from
    │   │                        asgikit and asgikit.websockets too
    │   └── WebSocketDenialResponse  (asgikit.testing) the app refused the handshake with
    │                            an HTTP response (status_code, headers, content)
    ├── NoMatchFound             url_path_for / url_for: no route with that name and params
    ├── RangeNotSatisfiable      a Range header no byte of the file satisfies (also a
    │                            ValueError); FileResponse answers it with 416
    └── LifespanNotRunError      request.state.x is missing because the app has a lifespan
                                 the server never ran (daphne; also an AttributeError)

Programming mistakes are not in this tree: they raise the built-in `TypeError`,
`ValueError` or `RuntimeError` with a message that says how to fix them (a header value
with CR or LF, a response started twice, a body stream read twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

__all__ = [
    "AsgikitError",
    "ClientDisconnect",
    "HTTPException",
    "LifespanNotRunError",
    "NoMatchFound",
    "Overloaded",
    "QueueTimeout",
    "RangeNotSatisfiable",
    "WebSocketDisconnect",
]


class AsgikitError(Exception):
    """Base class of the exceptions asgikit raises."""


def reason_phrase(status_code: int) -> str:
    """The standard reason phrase of ``status_code`` ("" for an unknown code)."""
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return ""


class HTTPException(AsgikitError):
    """Raise to answer with an HTTP error.

    The default response is ``application/json`` ``{"detail": detail}``; ``detail``
    defaults to the status code's reason phrase. ``headers`` are added to the response
    (for example ``Retry-After`` or ``WWW-Authenticate``).

    >>> raise HTTPException(404, detail="No such model")
    Traceback (most recent call last):
      ...
    asgikit.exceptions.HTTPException: 404: No such model
    """

    def __init__(
        self,
        status_code: int,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if detail is None:
            detail = reason_phrase(status_code)
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers) if headers else None

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class Overloaded(HTTPException):
    """503 Service Unavailable with ``Retry-After``: the server sheds load.

    Raised by `asgikit.serving.Batcher` when its queue is full (and by your own code to
    shed load); the router turns it into ``503 {"detail": ...}`` with a ``Retry-After``
    header (seconds).
    """

    def __init__(self, detail: str | None = None, retry_after: int = 1) -> None:
        super().__init__(
            503,
            detail or "Server overloaded, retry later",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class QueueTimeout(HTTPException):
    """504 Gateway Timeout: a call waited too long for its batch.

    Raised by `asgikit.serving.Batcher` when a call has waited ``max_queue_wait`` seconds
    without being dispatched; its item is never sent to the batch function. The router
    turns it into ``504 {"detail": ...}``.
    """

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(504, detail or "Waited too long in the batch queue")


class ClientDisconnect(AsgikitError):
    """The client disconnected before the request body was fully received.

    The router handles it quietly: nobody is left to answer, so nothing is sent and
    nothing is logged as an error.
    """


class NoMatchFound(AsgikitError):
    """`url_path_for` found no route with that name and those parameters."""

    def __init__(self, name: str, path_params: Mapping[str, object]) -> None:
        params = ", ".join(sorted(path_params))
        super().__init__(f'No route exists for name "{name}" and params "{params}".')


class WebSocketDisconnect(AsgikitError):
    """The WebSocket connection is over: the client closed it (``code``, ``reason``),
    or it went away without a close frame (``1006``, or the code the server reports for
    that).

    Raised by the receive methods, and by the send methods once the client has gone.
    The router ends the endpoint quietly when it escapes.
    """

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason or ""

    def __str__(self) -> str:
        return f"WebSocket closed with code {self.code}" + (
            f": {self.reason}" if self.reason else ""
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class RangeNotSatisfiable(AsgikitError, ValueError):
    """The ``Range`` header cannot be served: answer ``416`` with ``bytes */size``."""


class LifespanNotRunError(AsgikitError, AttributeError):
    """A ``request.state`` attribute is missing because the app's lifespan never ran."""
