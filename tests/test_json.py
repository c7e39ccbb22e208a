"""The one JSON codec (asgikit._json) as pure functions, and every writer using it."""

from __future__ import annotations

import gc
import math
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from asgikit import EventSourceResponse, JSONResponse, NDJSONResponse, Request, Router
from asgikit._json import InvalidJSON, decode, encode, encode_line, encode_text
from asgikit.testing import TestClient


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [1, 2.5]}, b'{"a":1,"b":[1,2.5]}'),
        ("héllo", '"héllo"'.encode()),
        ("\ud800", b'"\\ud800"'),
        ({"s": "é\udfff"}, b'{"s":"\\u00e9\\udfff"}'),
        (None, b"null"),
    ],
)
def test_encode_is_compact_utf8_and_escapes_lone_surrogates(value: object, expected: bytes) -> None:
    assert encode(value) == expected
    assert encode_text(value) == expected.decode("utf-8")
    expected.decode("utf-8")  # always valid UTF-8


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.inf]])
def test_encode_refuses_numbers_json_cannot_represent(value: object) -> None:
    with pytest.raises(ValueError):
        encode(value)
    with pytest.raises(ValueError):
        encode_text(value)


def test_encode_refuses_non_serialisable_values() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b'{"a": [1, 2.5, "x"]}', {"a": [1, 2.5, "x"]}),
        ('"\\ud800"', "\ud800"),
        (b"1e308", 1e308),
        (b"-0.0", -0.0),
    ],
)
def test_decode_accepts_json(document: bytes | str, expected: object) -> None:
    assert decode(document) == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"NaN", "NaN is not a JSON value"),
        (b"[Infinity]", "Infinity is not a JSON value"),
        (b"-Infinity", "-Infinity is not a JSON value"),
        (b"1e400", "too large for a float"),
        (b'{"x": -1e400}', "too large for a float"),
        (b"\xff{}", "not valid UTF-8 (byte 0)"),
        (b'{"a": ', "Expecting value (line 1, column 7)"),
        (b"", "Expecting value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"1" * 5000, "digits"),
    ],
)
def test_decode_refuses_what_is_not_json(document: bytes, message: str) -> None:
    with pytest.raises(InvalidJSON, match=re.escape(message)):
        decode(document)


def test_every_accepted_value_can_be_written_back() -> None:
    for document in [b'{"s": "\\ud800"}', b"[1e308, -1e308, 1e-400]", b'"\\u0000"']:
        value = decode(document)
        assert decode(encode(value)) == value


# Every response writer uses the same encoder: on 0.1.0 NDJSON and SSE raised
# UnicodeEncodeError on a lone surrogate after the 200 had gone out.

router = Router()


@router.post("/echo")
async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


@router.post("/echo-ndjson")
async def echo_ndjson(request: Request) -> NDJSONResponse:
    return NDJSONResponse([await request.json()])


@router.post("/echo-sse")
async def echo_sse(request: Request) -> EventSourceResponse:
    return EventSourceResponse([await request.json()])


BODY = b'{"s":"\\ud800"}'


def test_lone_surrogate_round_trips_through_every_writer() -> None:
    with TestClient(router) as client:
        assert client.post("/echo", content=BODY).content == BODY
        assert client.post("/echo-ndjson", content=BODY).content == BODY + b"\n"
        assert client.post("/echo-sse", content=BODY).content == b"data: " + BODY + b"\n\n"


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN"])
def test_numbers_json_cannot_represent_are_a_400(number: bytes) -> None:
    with TestClient(router) as client:
        for path in ("/echo", "/echo-ndjson", "/echo-sse"):
            response = client.post(path, content=b'{"x": ' + number + b"}")
            assert response.status_code == 400
            assert response.json()["detail"].startswith("Invalid JSON: ")


def _nested(depth: int, kind: str) -> bytes:
    opening, closing = {"array": (b"[", b"]"), "object": (b'{"a":', b"}")}[kind]
    return opening * depth + b"1" + closing * depth


@pytest.mark.parametrize("kind", ["array", "object"])
def test_the_deepest_document_decode_accepts_is_written_back_from_deeper_calls(
    kind: str,
) -> None:
    low, high = 1, 100_000  # decode accepts low levels here and refuses high
    while high - low > 1:
        middle = (low + high) // 2
        try:
            decode(_nested(middle, kind))
        except InvalidJSON:
            high = middle
        else:
            low = middle
    value = decode(_nested(low, kind))
    threads = threading.active_count()

    def from_deeper(depth: int, write: Callable[[Any], Any]) -> Any:
        # An endpoint under middleware writes it back from further down the stack.
        return write(value) if depth == 0 else from_deeper(depth - 1, write)

    assert decode(from_deeper(300, encode)) == value
    assert decode(from_deeper(300, encode_line)) == value
    assert decode(from_deeper(300, encode_text)) == value
    assert threading.active_count() == threads  # the helper thread was joined


class _Leaf:
    """Weakly referenced at the bottom of a value, to see whether the value was freed."""


def test_a_failed_encode_on_a_fresh_stack_leaves_no_cycle_behind() -> None:
    leaf = _Leaf()
    alive = weakref.ref(leaf)
    value: Any = [leaf]
    for _ in range(100_000):  # too deep for any stack
        value = [value]
    del leaf
    gc.disable()
    try:
        with pytest.raises(RecursionError):
            encode(value)
        del value
        assert alive() is None  # freed by reference counting, not left to the collector
    finally:
        gc.enable()
