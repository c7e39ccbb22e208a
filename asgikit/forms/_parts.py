"""A ``multipart/form-data`` body read part by part as it arrives (`Request.parts`).

`Request.form` keeps the whole form: text fields in memory, files spooled to disk past
1 MiB, all ready before the endpoint looks at any of it. `read_parts` instead hands the
endpoint each part as the parser reaches it, and the part's body as a stream of the
chunks the client sent: nothing is kept and nothing touches the disk, so a 10 GiB upload
can go straight to object storage, a hash or a model's input pipeline.

Theory of operation. One `_Parts` holds the parser and the body; every read pulls the
parser's next event, parsing one more body chunk whenever the events run out. The
parser emits, per part, a `MultipartSegment` (the headers), the body chunks, then
``None``. The parts come one at a time: asking for the next part first reads past what
is left of the current one (a part nobody reads is skipped, its bytes dropped), and a
part left behind can no longer be read (`RuntimeError`: its bytes are gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from multipart import MultipartError, MultipartSegment  # type: ignore[import-untyped]

from asgikit._http import body_too_large
from asgikit.datastructures import Headers
from asgikit.exceptions import HTTPException
from asgikit.forms._multipart import (
    decode_field,
    parser_error,
    part_headers,
    part_name_and_filename,
)

__all__ = ["MultipartPart", "read_parts"]

_END: Any = object()  # no event left: the body and the parse are over


class _Parts:
    """The parser and the body one `read_parts` iteration reads from."""

    __slots__ = ("body", "current", "events", "max_size", "parser", "received")

    def __init__(self, parser: Any, body: AsyncIterator[bytes], max_size: int | None) -> None:
        self.parser = parser
        self.body = body
        self.max_size = max_size
        self.received = 0
        # The parse of the last chunk, taken one event at a time: the iteration's own
        # count of parts answers before the parser's backstop limit (see read_parts).
        self.events: Iterator[Any] = iter(())
        self.current: MultipartPart | None = None  # the one part that may be read

    async def next_event(self) -> Any:
        """The parser's next event (a segment, a body chunk, ``None`` at the end of a
        part), or `_END` after the last part. Malformed input: a 400 (or 413)."""
        while True:
            try:
                return next(self.events)
            except StopIteration:
                pass
            except MultipartError as exc:
                raise parser_error(exc) from None
            try:
                chunk = await self.body.__anext__()
            except StopAsyncIteration:
                try:
                    self.parser.close()  # raises if the final boundary never came
                except MultipartError as exc:
                    raise parser_error(exc) from None
                return _END
            self.received += len(chunk)
            if self.max_size is not None and self.received > self.max_size:
                raise body_too_large(self.max_size)
            self.events = self.parser.parse(chunk)


class MultipartPart:
    """One part of a ``multipart/form-data`` body, as `Request.parts` yields it.

    ``name`` is the form field's name, ``filename`` the client's file name (RFC 5987
    ``filename*`` decoded and preferred; ``None`` for a plain text field),
    ``content_type`` the part's ``Content-Type`` header (``None`` if absent),
    ``headers`` all its headers, ``charset`` the charset its ``Content-Type`` names
    (``None`` if none). ``size`` counts the body bytes read so far.

    Read the body once, before asking for the next part: `stream` (chunks as they
    arrive), `read` (all of it) or `text` (decoded). A part not read is skipped when
    the next one is asked for; reading it afterwards raises `RuntimeError`.

    >>> @router.post("/transcribe")
    ... async def transcribe(request):
    ...     received = {}
    ...     async for part in request.parts():
    ...         if part.filename is None:
    ...             received[part.name] = await part.text()
    ...         else:  # chunk by chunk, as the client sends it
    ...             async for chunk in part.stream():
    ...                 pass  # feed the decoder, the hash, the bucket ...
    ...             received[part.name] = f"{part.filename}: {part.size} bytes"
    ...     return received
    >>> response = await client.post(
    ...     "/transcribe", data={"lang": "en"}, files={"audio": ("a.wav", b"RIFF" * 1000)}
    ... )
    >>> response.json()
    {'lang': 'en', 'audio': 'a.wav: 4000 bytes'}
    """

    __slots__ = (
        "_parts",
        "_started",
        "charset",
        "complete",
        "content_type",
        "filename",
        "headers",
        "name",
        "size",
    )

    def __init__(self, parts: _Parts, segment: Any) -> None:
        self._parts = parts
        self.name, self.filename = part_name_and_filename(segment)
        self.content_type: str | None = segment.header("Content-Type")
        self.headers: Headers = part_headers(segment)
        self.charset: str | None = segment.charset
        self.size = 0
        self._started = False
        self.complete = False  # the body has been read (or skipped) to its end

    async def stream(self) -> AsyncIterator[bytes]:
        """The part's body as the chunks the client sent, as they arrive.

        Once per part (a second call raises `RuntimeError`), and only while it is the
        current part. A client that leaves mid-body raises `ClientDisconnect`.
        """
        self._claim()
        parts = self._parts
        while not self.complete:
            event = await parts.next_event()
            if event is None:
                self.complete = True
                return
            self.size += len(event)
            yield event
            if parts.current is not self:  # the iteration moved on while we yielded
                raise self._left_behind()

    async def read(self, max_size: int | None = None) -> bytes:
        """The part's whole body. Over ``max_size`` bytes: `HTTPException(413)`."""
        chunks: list[bytes] = []
        async for chunk in self.stream():
            if max_size is not None and self.size > max_size:
                raise HTTPException(
                    413, f"Part {self.name!r} is larger than max_size={max_size} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def text(self, max_size: int | None = None) -> str:
        """The part's body decoded with its ``charset`` (UTF-8 if it names none).

        Not valid in that charset, or an unknown charset: `HTTPException(400)`; over
        ``max_size`` bytes: 413.
        """
        data = await self.read(max_size)
        return decode_field(self.name, data, self.charset or "utf-8")

    def _claim(self) -> None:
        if self._parts.current is not self:
            raise self._left_behind()
        if self._started:
            raise RuntimeError(f"the body of part {self.name!r} was already read")
        self._started = True

    def _left_behind(self) -> RuntimeError:
        return RuntimeError(
            f"part {self.name!r} was left behind: read a part before asking for the next one"
        )

    async def _skip(self) -> None:
        """Read past what is left of the body (nobody wants it)."""
        parts = self._parts
        while not self.complete:
            event = await parts.next_event()
            if event is None:
                self.complete = True
            else:
                self.size += len(event)

    def __repr__(self) -> str:
        return (
            f"MultipartPart(name={self.name!r}, filename={self.filename!r}, "
            f"content_type={self.content_type!r})"
        )


async def read_parts(
    parser: Any, body: AsyncIterator[bytes], max_parts: int, max_size: int | None
) -> AsyncIterator[MultipartPart]:
    """Each part of the body ``parser`` reads, in order (see the module's docstring).

    Past ``max_parts`` parts: `HTTPException(413)`; past ``max_size`` body bytes: 413.
    The part last yielded stays readable after the iteration stops (``break``): this
    generator holds nothing to release, and a finalizer that disowned the part would
    make reading it depend on when the garbage collector runs."""
    parts = _Parts(parser, body, max_size)
    count = 0
    while True:
        current = parts.current
        if current is not None:
            await current._skip()
        event = await parts.next_event()
        if event is _END:
            parts.current = None  # (skipped above: its bytes are gone)
            return
        if not isinstance(event, MultipartSegment):  # pragma: no cover - parser's rule
            raise RuntimeError(f"multipart parser event out of order: {event!r}")
        count += 1
        if count > max_parts:
            raise HTTPException(413, f"Too many parts: the limit is max_parts={max_parts}")
        part = parts.current = MultipartPart(parts, event)
        yield part
