"""The one JSON codec: every body asgikit writes or reads as JSON goes through here.

Output (`encode`, `encode_text`) is compact UTF-8 (``separators=(",", ":")``, no ASCII
escaping) and always valid: NaN and infinities raise `ValueError` (they are not JSON,
RFC 8259), and a lone surrogate such as ``"\\ud800"``, which a Python ``str`` may hold but
UTF-8 cannot carry, is written as its ``\\ud800`` escape instead of failing half-way
through a response.

Input (`decode`) is strict RFC 8259: ``NaN``, ``Infinity``, ``-Infinity`` and numbers
that overflow a float (``1e400``) are refused, as are invalid UTF-8, arrays and objects
nested more than `MAX_DEPTH` deep and integers longer than Python converts. Every refusal is an
`InvalidJSON` whose message says what is wrong and where; callers turn it into a 400
(`Request.json`) or a 1007 close (`WebSocket.receive_json`). So a value that a request
was allowed to carry can always be written back out.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_DEPTH", "InvalidJSON", "decode", "encode", "encode_line", "encode_text"]

MAX_DEPTH = 600
"""Deepest nesting of arrays and objects `decode` accepts. The encoder recurses once per
level, so a limit set by the interpreter's recursion limit where the body was read
would let through documents that fail when written back from a deeper call (an
endpoint under middleware): this one leaves hundreds of frames to spare."""

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def encode(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes.

    `ValueError` for NaN or an infinity, `TypeError` for a value JSON cannot represent.
    Lone surrogates are escaped (``\\ud800``), so the result is always valid UTF-8.
    """
    text = _ENCODER.encode(value)
    try:
        return text.encode()  # UTF-8 (naming the codec costs a lookup per call)
    except UnicodeEncodeError:
        # Only a lone surrogate makes this fail: escape everything non-ASCII instead.
        return _ASCII_ENCODER.encode(value).encode("ascii")


def encode_line(value: Any) -> bytes:
    """`encode` plus ``\\n``: one line of NDJSON (one call per row, not two)."""
    text = _ENCODER.encode(value)
    try:
        return (text + "\n").encode()
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(value).encode("ascii") + b"\n"


def encode_text(value: Any) -> str:
    """`encode` as a ``str`` (for WebSocket text frames): valid UTF-8 when encoded."""
    text = _ENCODER.encode(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(value)
    return text


class InvalidJSON(ValueError):
    """A document `decode` refuses; the message says what is wrong and where."""


def _refuse_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are JavaScript, not JSON (RFC 8259).
    raise InvalidJSON(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e400 parses to inf, which no JSON encoder can write back.
        raise InvalidJSON(f"the number {text[:40]} is too large for a float")
    return value


_TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"

# Made once: json.loads with hooks builds a new decoder (and its scanner) per call.
_decode = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float).decode


def decode(data: bytes | str) -> Any:
    """Parse one JSON document (``bytes`` must be UTF-8); `InvalidJSON` if it is not one."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSON(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        value = _decode(text)
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidJSON(_TOO_DEEP) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise InvalidJSON(str(exc)) from None
    # Nesting deeper than MAX_DEPTH takes two characters a level and as many brackets:
    # the walk runs only for documents that could be that deep.
    if (
        len(text) > 2 * MAX_DEPTH
        and text.count("[") + text.count("{") > MAX_DEPTH
        and _deeper_than(value, MAX_DEPTH)
    ):
        raise InvalidJSON(_TOO_DEEP)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep in a decoded document
    (whose only containers are ``list`` and ``dict``); no recursion."""
    if type(value) is not list and type(value) is not dict:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is list or type(child) is dict:
                stack.append((child, depth + 1))
    return False
