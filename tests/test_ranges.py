"""The pure rules behind FileResponse: validators, conditional requests, byte ranges."""

from __future__ import annotations

import calendar
import email.utils
from urllib.parse import unquote

import pytest

from asgikit._ranges import (
    RangeNotSatisfiable,
    content_disposition,
    content_range,
    format_http_date,
    if_range_allows,
    is_not_modified,
    make_etag,
    multipart_byteranges_layout,
    parse_http_date,
    parse_range_header,
)

# ---------------------------------------------------------------- Range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, [(0, 100)]),
        ("bytes=0-0", 1000, [(0, 1)]),
        ("bytes=100-", 1000, [(100, 1000)]),
        ("bytes=-100", 1000, [(900, 1000)]),
        ("bytes=-5000", 1000, [(0, 1000)]),  # suffix longer than the file: the whole file
        ("bytes=990-2000", 1000, [(990, 1000)]),  # last-pos past the end is clipped
        ("bytes=999-", 1000, [(999, 1000)]),
        ("bytes=0-", 1000, [(0, 1000)]),
        ("BYTES=0-1", 10, [(0, 2)]),  # the unit is case-insensitive
        ("bytes = 0-1", 10, [(0, 2)]),
        ("bytes=0-1, 5-6", 10, [(0, 2), (5, 7)]),
        ("bytes=5-6,0-1", 10, [(0, 2), (5, 7)]),  # sorted
        ("bytes=0-4,2-8", 10, [(0, 9)]),  # overlapping: merged
        ("bytes=0-4,5-8", 10, [(0, 9)]),  # adjacent: merged
        ("bytes=0-1,0-1,0-1", 10, [(0, 2)]),  # repeated: one range
        ("bytes=-3,0-1", 10, [(0, 2), (7, 10)]),
        ("bytes=0-1,,3-4", 10, [(0, 2), (3, 5)]),  # empty list elements are allowed
        ("bytes=0-1,50-60", 10, [(0, 2)]),  # the unsatisfiable one is dropped
        ("bytes=0-" + "9" * 5000, 10, [(0, 10)]),  # an absurdly long number is clipped
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: list[tuple[int, int]]) -> None:
    assert parse_range_header(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        "items=0-1",  # another unit
        "bytes",  # no '='
        "bytes=",
        "bytes=,",
        "bytes=abc",
        "bytes=1",
        "bytes=-",
        "bytes=5-1",  # last < first makes the header invalid
        "bytes=0-1,x-y",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=\u0661-2",  # non-ASCII digits
    ],
)
def test_malformed_range_headers_are_ignored(header: str) -> None:
    assert parse_range_header(header, 1000) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=-0", 1000),
        ("bytes=0-", 0),  # nothing is satisfiable in an empty file...
        ("bytes=-5", 0),
        ("bytes=2000-3000,5000-", 1000),
        ("bytes=" + "9" * 5000 + "-", 10),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range_header(header, size)


def test_too_many_ranges_are_refused_before_any_work() -> None:
    sixteen = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(16))
    assert len(parse_range_header(sixteen, 1000) or []) == 16
    seventeen = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(17))
    with pytest.raises(RangeNotSatisfiable, match="too many ranges"):
        parse_range_header(seventeen, 1000)
    with pytest.raises(RangeNotSatisfiable):
        parse_range_header("bytes=" + ",".join(["0-0"] * 10_000), 1000)
    assert parse_range_header("bytes=0-1,4-5,8-9", 1000, max_ranges=3) == [(0, 2), (4, 6), (8, 10)]


def test_content_range() -> None:
    assert content_range(0, 100, 1000) == "bytes 0-99/1000"
    assert content_range(999, 1000, 1000) == "bytes 999-999/1000"


# ---------------------------------------------------------------- multipart/byteranges


def test_multipart_layout_frames_each_range_and_counts_every_byte() -> None:
    data = bytes(range(100))
    ranges = [(0, 10), (50, 60)]
    heads, tail, length = multipart_byteranges_layout(ranges, 100, "text/plain", "XYZ")
    body = heads[0] + data[0:10] + heads[1] + data[50:60] + tail
    assert len(body) == length
    assert body.startswith(
        b"--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/100\r\n\r\n"
    )
    assert (
        b"\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 50-59/100\r\n\r\n" in body
    )
    assert body.endswith(data[50:60] + b"\r\n--XYZ--\r\n")
    # A standard MIME parser reads it back.
    parsed = email.message_from_bytes(
        b"Content-Type: multipart/byteranges; boundary=XYZ\r\n\r\n" + body
    )
    parts = parsed.get_payload()
    assert isinstance(parts, list)
    assert [part["Content-Range"] for part in parts] == ["bytes 0-9/100", "bytes 50-59/100"]


# ---------------------------------------------------------------- dates and validators


def test_http_dates_round_trip_in_every_format() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777  # RFC 850
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777  # asctime
    assert parse_http_date("Sun, 06 Nov 1994 09:49:37 +0100") == 784111777
    for timestamp in (0, 951782400, 1709164800, 4102444799):  # leap days, far future
        text = format_http_date(timestamp)
        assert text == email.utils.formatdate(timestamp, usegmt=True)
        assert parse_http_date(text) == timestamp
        assert calendar.timegm(email.utils.parsedate(text)) == timestamp  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["", "yesterday", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT"]
)
def test_bad_http_dates_are_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_etag_is_strong_and_changes_with_size_or_time() -> None:
    etag = make_etag(10, 1_000_000_000)
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert make_etag(11, 1_000_000_000) != etag
    assert make_etag(10, 1_000_000_001) != etag
    assert make_etag(10, 1_000_000_000) == etag


ETAG = '"abc-10"'
MTIME = 784111777
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("if_none_match", "if_modified_since", "expected"),
    [
        (None, None, False),
        (ETAG, None, True),
        ("W/" + ETAG, None, True),  # If-None-Match uses weak comparison
        ('"other", ' + ETAG, None, True),
        ('"other"', None, False),
        ("*", None, True),
        (None, DATE, True),
        (None, "Sun, 06 Nov 1994 08:49:38 GMT", True),
        (None, "Sun, 06 Nov 1994 08:49:36 GMT", False),
        (None, "not a date", False),
        ('"other"', DATE, False),  # If-None-Match wins over If-Modified-Since
    ],
)
def test_is_not_modified(
    if_none_match: str | None, if_modified_since: str | None, expected: bool
) -> None:
    assert is_not_modified(ETAG, MTIME, if_none_match, if_modified_since) is expected


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, True),
        (ETAG, True),
        ("W/" + ETAG, False),  # If-Range needs a strong match
        ('"other"', False),
        (DATE, True),
        ("Sun, 06 Nov 1994 08:49:38 GMT", False),  # a date must match exactly
        ("garbage", False),
    ],
)
def test_if_range(if_range: str | None, expected: bool) -> None:
    assert if_range_allows(if_range, ETAG, DATE) is expected


# ---------------------------------------------------------------- Content-Disposition


def test_plain_ascii_filename() -> None:
    assert content_disposition("attachment", "report.pdf") == 'attachment; filename="report.pdf"'
    assert content_disposition("inline", 'a "b"\\c.txt') == r'inline; filename="a \"b\"\\c.txt"'


def test_unicode_filename_gets_fallback_and_rfc5987() -> None:
    value = content_disposition("attachment", "résumé €.pdf")
    assert value.startswith("attachment; filename=\"resume _.pdf\"; filename*=UTF-8''")
    encoded = value.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == "résumé €.pdf"
    assert value.isascii()


def test_control_characters_never_reach_the_header() -> None:
    value = content_disposition("attachment", "evil\r\nSet-Cookie: x=1.txt")
    assert "\r" not in value and "\n" not in value
    # Not even percent-encoded: a browser would decode them back.
    assert unquote(value.split("''", 1)[1]) == "evilSet-Cookie: x=1.txt"
