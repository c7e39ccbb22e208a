"""The exception hierarchy.

`AsgikitError` is the base of everything asgikit raises on purpose. `HTTPException`
becomes an HTTP error response; `ClientDisconnect` means the client went away while the
request body was being read; `NoMatchFound` comes from URL reversal.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

__all__ = ["AsgikitError", "ClientDisconnect", "HTTPException", "NoMatchFound"]


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
