"""Server-sent events framing: pure functions from values to ``text/event-stream`` bytes.

Follows the WHATWG HTML "Server-sent events" format: an event is a block of
``field: value`` lines ended by a blank line. Only CR, LF and CRLF end a line in that
format, so ``data`` and ``comment`` are split on exactly those (never on
``str.splitlines``'s extra separators). ``event`` and ``id`` are single-line fields: a
CR or LF in them would let a value inject a second event, so they raise `ValueError`.
"""

from __future__ import annotations

import re
from typing import Any

from asgikit import _json

__all__ = [
    "PING",
    "ServerSentEvent",
    "encode_comment",
    "encode_data",
    "encode_event",
    "encode_json_data",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

#: The keep-alive comment sent after ``ping`` seconds of silence.
PING = b": ping\n\n"


def _field_lines(name: str, text: str) -> str:
    """``name: line`` for every line of ``text`` (CR, LF or CRLF separated)."""
    if "\n" not in text and "\r" not in text:
        return f"{name}: {text}\n"
    return "".join(f"{name}: {line}\n" for line in _LINE_BREAK.split(text))


def encode_data(text: str) -> bytes:
    """One event whose data is ``text`` (several ``data:`` lines if it has line breaks)."""
    return encode_event(str(text))


def encode_json_data(value: Any) -> bytes:
    """One event whose data is ``value`` as compact JSON (`ValueError` for NaN/inf,
    `TypeError` for values JSON cannot represent)."""
    # JSON escapes control characters, so the document is a single line.
    return b"data: " + _json.encode(value) + b"\n\n"


def encode_comment(text: str) -> bytes:
    """A comment block (ignored by clients; useful as a keep-alive)."""
    return (_field_lines("", text) + "\n").encode()


def _single_line(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"server-sent event {name} must not contain CR or LF: {value!r}")
    return value


class ServerSentEvent:
    """One server-sent event.

    ``data`` is a ``str`` (split into one ``data:`` line per line), ``bytes`` (decoded as
    UTF-8) or any JSON-serialisable value (sent as compact JSON). ``event`` names the
    event type (``addEventListener(event, ...)`` in browsers), ``id`` sets the client's
    last event ID (sent back as the ``Last-Event-ID`` request header on reconnection),
    ``retry`` is the reconnection delay in milliseconds, ``comment`` adds ``:`` lines.

    ``event`` or ``id`` containing CR or LF, or ``id`` containing NUL, raise
    `ValueError`: they cannot be sent without corrupting the stream. A negative or
    non-integer ``retry`` raises `ValueError`/`TypeError`.

    >>> ServerSentEvent({"token": "Hello"}, event="token", id="17").encode()
    b'event: token\\nid: 17\\ndata: {"token":"Hello"}\\n\\n'
    """

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        if event is not None:
            _single_line("event", event)
        if id is not None:
            id = str(id)
            _single_line("id", id)
            if "\0" in id:
                raise ValueError(f"server-sent event id must not contain NUL: {id!r}")
        if retry is not None:
            if isinstance(retry, bool) or not isinstance(retry, int):
                raise TypeError(f"retry must be an int (milliseconds), not {type(retry).__name__}")
            if retry < 0:
                raise ValueError(f"retry must be >= 0 milliseconds, not {retry}")
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        """The event as ``text/event-stream`` bytes, ending with the blank line."""
        parts: list[str] = []
        if self.comment is not None:
            parts.append(_field_lines("", self.comment))
        if self.event is not None:
            parts.append(f"event: {self.event}\n")
        if self.id is not None:
            parts.append(f"id: {self.id}\n")
        if self.retry is not None:
            parts.append(f"retry: {self.retry}\n")
        data = self.data
        if data is not None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = bytes(data).decode("utf-8")
            if isinstance(data, str):
                parts.append(_field_lines("data", data))
            else:
                parts.append("data: " + _json.encode_text(data) + "\n")
        parts.append("\n")
        return "".join(parts).encode()

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("data", "event", "id", "retry", "comment")
            if getattr(self, name) is not None
        )
        return f"ServerSentEvent({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return all(
            getattr(self, name) == getattr(other, name)
            for name in ("data", "event", "id", "retry", "comment")
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


def encode_event(item: Any) -> bytes:
    """Frame one item of an event stream: a `ServerSentEvent` as itself, a ``str`` as
    one data event, ``bytes`` as UTF-8 text data, anything else as JSON data."""
    if item.__class__ is str:  # the common case (tokens), framed without another call
        if "\n" in item or "\r" in item:
            return (_field_lines("data", item) + "\n").encode()
        # (One f-string: a single allocation. str.encode() is UTF-8 without naming it,
        # and skips looking the name up.)
        return f"data: {item}\n\n".encode()
    if isinstance(item, ServerSentEvent):
        return item.encode()
    if isinstance(item, str):
        return encode_event(str(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return encode_event(bytes(item).decode("utf-8"))
    return encode_json_data(item)
