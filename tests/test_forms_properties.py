"""Property tests (hypothesis) for the body parsers: forms, JSON, Content-Length, cookies, Host.

A form gives the same result however its body is split into chunks (1 byte to whole),
and no body, well-formed or not, makes a parser raise anything but asgikit's 400/413
`HTTPException`. Kept fast: modest ``max_examples``, no deadline.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import anyio
from helpers import http_scope, receive_messages, request_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgikit import HTTPException, Request, UploadFile
from asgikit._http import parse_content_length, parse_cookie_header
from asgikit.datastructures import URL, Headers
from asgikit.forms import FormLimits, iter_parts, parse_form

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUNDARY = "propertyBoundary1x"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED = "application/x-www-form-urlencoded"

names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\r\n\\'),
    min_size=1,
    max_size=12,
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
files = st.binary(max_size=3000)
fields = st.lists(st.tuples(names, st.one_of(texts, st.tuples(names, files))), max_size=6)
limits = st.builds(
    FormLimits,
    max_files=st.integers(0, 4),
    max_fields=st.integers(0, 4),
    max_part_size=st.integers(0, 60),
    max_file_size=st.one_of(st.none(), st.integers(0, 3000)),
    max_size=st.one_of(st.none(), st.integers(0, 20000)),
)


def multipart_body(items: list[tuple[str, Any]]) -> bytes:
    out = bytearray()
    for name, value in items:
        out += f"--{BOUNDARY}\r\n".encode()
        if isinstance(value, tuple):
            filename, data = value
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
            )
            out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def urlencoded_body(items: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in items).encode()


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(body) + 1) for cut in cuts} | {0, len(body)})
    return [body[start:end] for start, end in itertools.pairwise(points)] or [b""]


async def chunks_of(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def parse(
    body: bytes, pieces: list[bytes], content_type: str, limits: FormLimits, length: bool
) -> Any:
    """What parse_form makes of ``pieces``: the fields (files as bytes) or the error."""
    raw = [(b"content-type", content_type.encode())]
    if length:
        raw.append((b"content-length", str(len(body)).encode()))

    async def main() -> Any:
        try:
            form = await parse_form(Headers(raw=raw), chunks_of(pieces), limits)
        except HTTPException as exc:
            assert exc.status_code in (400, 413), exc
            return ("error", exc.status_code)
        result = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                result.append((name, value.filename, await value.read(), value.size))
            else:
                result.append((name, value))
        await form.close()
        return result

    return anyio.run(main)


@SETTINGS
@given(items=fields, cuts=st.lists(st.integers(0, 10**6), max_size=8), length=st.booleans())
def test_multipart_parses_alike_however_split(
    items: list[Any], cuts: list[int], length: bool
) -> None:
    body = multipart_body(items)
    whole = parse(body, [body], MULTIPART, FormLimits(), length)
    assert whole == parse(body, split(body, cuts), MULTIPART, FormLimits(), length)
    assert whole == parse(
        body, [body[i : i + 1] for i in range(len(body))], MULTIPART, FormLimits(), length
    )
    expected = [
        (name, value[0], value[1], len(value[1])) if isinstance(value, tuple) else (name, value)
        for name, value in items
    ]
    assert whole == expected


@SETTINGS
@given(
    items=st.lists(st.tuples(names, texts), max_size=6),
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    length=st.booleans(),
)
def test_urlencoded_parses_alike_however_split(
    items: list[tuple[str, str]], cuts: list[int], length: bool
) -> None:
    body = urlencoded_body(items)
    whole = parse(body, [body], URLENCODED, FormLimits(), length)
    assert whole == parse(body, split(body, cuts), URLENCODED, FormLimits(), length)
    assert whole == parse(
        body, [body[i : i + 1] for i in range(len(body))], URLENCODED, FormLimits(), length
    )
    assert whole == [(name, value) for name, value in items if name or value]


@SETTINGS
@given(
    items=fields,
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    limits=limits,
    length=st.booleans(),
)
def test_form_limits_give_the_same_answer_however_split(
    items: list[Any], cuts: list[int], limits: FormLimits, length: bool
) -> None:
    body = multipart_body(items)
    assert parse(body, [body], MULTIPART, limits, length) == parse(
        body, split(body, cuts), MULTIPART, limits, length
    )
    text_items = [(name, value) for name, value in items if isinstance(value, str)]
    encoded = urlencoded_body(text_items)
    assert parse(encoded, [encoded], URLENCODED, limits, length) == parse(
        encoded, split(encoded, cuts), URLENCODED, limits, length
    )


garbage = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda items, cut: multipart_body(items)[:cut], fields, st.integers(0, 2000)),
    st.builds(
        lambda items, noise, at: (lambda body: body[:at] + noise + body[at:])(
            multipart_body(items)
        ),
        fields,
        st.binary(min_size=1, max_size=20),
        st.integers(0, 2000),
    ),
)


@SETTINGS
@given(
    body=garbage,
    cuts=st.lists(st.integers(0, 10**6), max_size=5),
    limits=limits,
    length=st.booleans(),
)
def test_any_body_is_a_form_or_a_400_or_413(
    body: bytes, cuts: list[int], limits: FormLimits, length: bool
) -> None:
    for content_type in (MULTIPART, URLENCODED):
        parse(body, split(body, cuts), content_type, limits, length)  # asserts 400/413 only


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(value=json_values, cuts=st.lists(st.integers(0, 10**6), max_size=5), ascii=st.booleans())
def test_json_bodies_round_trip(value: Any, cuts: list[int], ascii: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii).encode()
    receive = receive_messages(request_messages(*split(body, cuts), b""))

    async def main() -> Any:
        return await Request(http_scope(method="POST"), receive).json()

    parsed = anyio.run(main)
    assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value))


@SETTINGS
@given(st.binary(max_size=30) | st.text(max_size=30))
def test_content_length_is_a_length_or_a_400(value: bytes | str) -> None:
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    try:
        length = parse_content_length(value)
    except HTTPException as exc:
        assert exc.status_code == 400
        assert not (raw and raw.isdigit() and raw.isascii() and len(raw) <= 20)
    else:
        assert raw.isdigit() and length == int(raw)


@SETTINGS
@given(st.text(max_size=60))
def test_cookie_parsing_never_raises(header: str) -> None:
    cookies = parse_cookie_header(header)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in cookies.items())


@SETTINGS
@given(
    host=st.binary(max_size=40),
    paths=st.sampled_from(
        [("/", "/"), ("/a/b", "/a/b"), ("/x y", "/x%20y"), ("/a?b#c", "/a%3Fb%23c")]
    ),
)
def test_any_host_header_gives_a_url_with_the_request_path(
    host: bytes, paths: tuple[str, str]
) -> None:
    path, encoded = paths  # scope["path"] is decoded; a URL's path is percent-encoded
    scope = http_scope(path, headers=[(b"host", host)], server=("10.0.0.1", 8000))
    url = URL(scope=scope)
    assert url.path == encoded  # the Host header cannot move the path
    assert url.hostname is None or isinstance(url.hostname, str)
    assert url.port is None or 0 <= url.port <= 65535


def read_parts(body: bytes, pieces: list[bytes], length: bool, skip_every: int = 0) -> Any:
    """What iter_parts makes of ``pieces``: (name, filename, bytes) per part, or the
    error. With ``skip_every``, every such part is left unread (skipped): None for it."""
    raw = [(b"content-type", MULTIPART.encode())]
    if length:
        raw.append((b"content-length", str(len(body)).encode()))

    async def main() -> Any:
        result: list[Any] = []
        try:
            async for index, part in aiter_enumerate(
                iter_parts(Headers(raw=raw), chunks_of(pieces), 1000, None)
            ):
                if skip_every and index % skip_every == 0:
                    result.append(None)
                    continue
                data = await part.read()
                assert part.size == len(data) and part.complete
                result.append((part.name, part.filename, data))
        except HTTPException as exc:
            assert exc.status_code in (400, 413), exc
            return ("error", exc.status_code)
        return result

    return anyio.run(main)


async def aiter_enumerate(iterator: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    index = 0
    async for item in iterator:
        yield index, item
        index += 1


@SETTINGS
@given(
    items=fields,
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    length=st.booleans(),
    skip_every=st.integers(0, 3),
)
def test_parts_match_the_form_however_split(
    items: list[Any], cuts: list[int], length: bool, skip_every: int
) -> None:
    body = multipart_body(items)
    expected = [
        (name, value[0], value[1]) if isinstance(value, tuple) else (name, None, value.encode())
        for name, value in items
    ]
    if skip_every:
        expected = [
            None if index % skip_every == 0 else item for index, item in enumerate(expected)
        ]
    assert read_parts(body, [body], length, skip_every) == expected
    assert read_parts(body, split(body, cuts), length, skip_every) == expected
    one_byte = [body[i : i + 1] for i in range(len(body))]
    assert read_parts(body, one_byte, length, skip_every) == expected


@SETTINGS
@given(
    head=st.binary(max_size=200),
    tail=st.binary(max_size=200),
    items=fields,
    cuts=st.lists(st.integers(0, 10**6), max_size=4),
)
def test_any_body_is_parts_or_a_400_or_413(
    head: bytes, tail: bytes, items: list[Any], cuts: list[int]
) -> None:
    body = head + multipart_body(items)[len(head) : -len(tail) or None] + tail
    whole = read_parts(body, [body], False)
    assert whole == read_parts(body, split(body, cuts), False)
