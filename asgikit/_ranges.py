"""Pure helpers for file responses: validators, conditional requests, byte ranges.

Nothing here does I/O. `FileResponse` and `StaticFiles` feed these functions header
values and file metadata and act on what they return, so every rule of RFC 9110
(sections 8.8, 13 and 14) that they follow is tested here without files or sockets.

Ranges are half-open ``(start, stop)`` pairs of byte offsets; `content_range` turns one
into the inclusive form HTTP uses.
"""

from __future__ import annotations

import time
import unicodedata
from email.utils import parsedate_tz
from urllib.parse import quote

from asgikit.exceptions import RangeNotSatisfiable

__all__ = [
    "DEFAULT_MAX_RANGES",
    "RangeNotSatisfiable",
    "content_disposition",
    "content_range",
    "format_http_date",
    "if_range_allows",
    "is_not_modified",
    "make_etag",
    "multipart_byteranges_layout",
    "parse_http_date",
    "parse_range_header",
]

DEFAULT_MAX_RANGES = 16

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def make_etag(size: int, mtime_ns: int) -> str:
    """A strong entity tag from a file's size and modification time (nanoseconds)."""
    return f'"{mtime_ns:x}-{size:x}"'


def format_http_date(timestamp: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for a Unix timestamp."""
    t = time.gmtime(timestamp)
    return (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(value: str) -> int | None:
    """The Unix timestamp of an HTTP date (any of the three RFC 9110 formats), or ``None``."""
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    offset = parsed[9] or 0
    try:
        days = _days_from_civil(year, month, day)
    except ValueError:
        return None
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second <= 60):
        return None
    return days * 86400 + hour * 3600 + minute * 60 + second - offset


def _days_from_civil(year: int, month: int, day: int) -> int:
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1 <= year <= 9999):
        raise ValueError("date out of range")
    # Howard Hinnant's days_from_civil: no datetime objects, no time zone surprises.
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _entity_tags(header: str) -> list[str]:
    """The entity tags of an ``If-None-Match``/``If-Match`` list (``*`` included as is)."""
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def is_not_modified(
    etag: str,
    last_modified: int,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> bool:
    """Whether a ``GET``/``HEAD`` may be answered ``304 Not Modified``.

    ``If-None-Match`` (weak comparison, ``*`` matches anything) takes precedence: when
    present, ``If-Modified-Since`` is ignored. ``last_modified`` is the file's
    modification time in whole seconds; an unparsable date is ignored.
    """
    if if_none_match is not None:
        wanted = _opaque(etag)
        for tag in _entity_tags(if_none_match):
            if tag == "*" or _opaque(tag) == wanted:
                return True
        return False
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and last_modified <= since
    return False


def if_range_allows(if_range: str | None, etag: str, last_modified: str) -> bool:
    """Whether the ``Range`` header applies given ``If-Range`` (``True`` when absent).

    An entity tag must match strongly (a weak tag never does); a date must equal the
    current ``Last-Modified`` exactly. Otherwise the whole file is sent with ``200``.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"'):
        return value == etag
    if value.startswith("W/"):
        return False
    wanted = parse_http_date(value)
    return wanted is not None and wanted == parse_http_date(last_modified)


def parse_range_header(
    header: str, size: int, max_ranges: int = DEFAULT_MAX_RANGES
) -> list[tuple[int, int]] | None:
    """The byte ranges a ``Range`` header selects from a ``size``-byte file.

    Returns sorted, coalesced, half-open ``(start, stop)`` ranges; overlapping and
    adjacent ranges are merged so repeated ranges cannot multiply the work.
    Returns ``None`` when the header must be ignored (another unit, bad syntax), so
    the whole file is sent. Raises `RangeNotSatisfiable` when no range overlaps the
    file, or when the header lists more than ``max_ranges`` ranges (a cheap way to
    refuse a crafted header; a real client asks for a few).

    Forms: ``bytes=0-99`` (first 100 bytes), ``bytes=100-`` (from offset 100),
    ``bytes=-100`` (last 100 bytes), and comma-separated lists of them.
    """
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > max_ranges:
        raise RangeNotSatisfiable(f"too many ranges (at most {max_ranges})")
    ranges: list[tuple[int, int]] = []
    saw_spec = False
    for part in parts:
        spec = part.strip()
        if not spec:
            continue  # RFC 9110 list syntax allows empty elements
        first, dash, last = spec.partition("-")
        first, last = first.strip(), last.strip()
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            return None
        if not first.isascii() or not last.isascii():
            return None
        saw_spec = True
        if first == "":
            if last == "":
                return None
            suffix = _offset(last)
            if suffix == 0 or size == 0:
                continue  # unsatisfiable on its own
            ranges.append((max(size - suffix, 0), size))
            continue
        start = _offset(first)
        if last != "":
            if _less(last, first):
                return None  # invalid: the whole header is ignored
            stop = min(_offset(last) + 1, size)
        else:
            stop = size
        if start >= size:
            continue  # unsatisfiable on its own
        ranges.append((start, stop))
    if not saw_spec:
        return None
    if not ranges:
        raise RangeNotSatisfiable("no requested range overlaps the file")
    return _coalesce(ranges)


def _offset(digits: str) -> int:
    # Python refuses to parse very long integers; anything this large is past any file.
    return int(digits) if len(digits) <= 18 else 10**18


def _less(digits: str, other: str) -> bool:
    """Whether the decimal ``digits`` is below ``other``, however long both are."""
    digits, other = digits.lstrip("0"), other.lstrip("0")
    return (len(digits), digits) < (len(other), other)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges.sort()
    merged = [ranges[0]]
    for start, stop in ranges[1:]:
        last_start, last_stop = merged[-1]
        if start <= last_stop:
            if stop > last_stop:
                merged[-1] = (last_start, stop)
        else:
            merged.append((start, stop))
    return merged


def content_range(start: int, stop: int, size: int) -> str:
    """The ``Content-Range`` value for the half-open range ``(start, stop)``."""
    return f"bytes {start}-{stop - 1}/{size}"


def multipart_byteranges_layout(
    ranges: list[tuple[int, int]], size: int, content_type: str, boundary: str
) -> tuple[list[bytes], bytes, int]:
    """Frame several ranges as ``multipart/byteranges`` (RFC 9110, section 14.6).

    Returns the header block to send before each range's bytes, the closing
    delimiter, and the exact total length (for ``Content-Length``).
    """
    heads: list[bytes] = []
    total = 0
    separator = ""
    for start, stop in ranges:
        head = (
            f"{separator}--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {content_range(start, stop, size)}\r\n\r\n"
        ).encode("latin-1")
        heads.append(head)
        separator = "\r\n"
        total += len(head) + stop - start
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    return heads, tail, total + len(tail)


def _quote_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def content_disposition(disposition_type: str, filename: str) -> str:
    """A ``Content-Disposition`` value naming ``filename`` (RFC 6266).

    Plain printable ASCII names become ``filename="..."``. Anything else also gets an
    RFC 5987 ``filename*=UTF-8''...`` with the exact name, after an ASCII fallback
    (accents stripped, other characters replaced by ``_``). Control characters never
    reach the header.
    """
    if filename.isascii() and filename.isprintable():
        return f'{disposition_type}; filename="{_quote_string(filename)}"'
    decomposed = unicodedata.normalize("NFKD", filename)
    fallback = "".join(
        char if char.isascii() and char.isprintable() else "_"
        for char in decomposed
        if not unicodedata.combining(char)
    )
    # Control characters (CR, LF, NUL, ...) are dropped from the exact name too: a
    # browser would decode them back out of the percent-encoding.
    exact = "".join(char for char in filename if unicodedata.category(char) != "Cc")
    encoded = quote(exact, safe="")
    return f"{disposition_type}; filename=\"{_quote_string(fallback)}\"; filename*=UTF-8''{encoded}"
