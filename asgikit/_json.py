"""The one JSON codec: every body asgikit writes or reads as JSON goes through here.

Output (`encode`, `encode_text`) is compact UTF-8 (``separators=(",", ":")``, no ASCII
escaping) and always valid: NaN and infinities raise `ValueError` (they are not JSON,
RFC 8259), and a lone surrogate such as ``"\\ud800"``, which a Python ``str`` may hold but
UTF-8 cannot carry, is written as its ``\\ud800`` escape instead of failing half-way
through a response.

Input (`decode`) is strict RFC 8259: ``NaN``, ``Infinity``, ``-Infinity`` and numbers
that overflow a float (``1e400``) are refused, as are invalid UTF-8, nesting deeper than
the interpreter can follow and integers longer than Python converts. Every refusal is an
`InvalidJSON` whose message says what is wrong and where; callers turn it into a 400
(`Request.json`) or a 1007 close (`WebSocket.receive_json`). So a value that a request
was allowed to carry can always be written back out: nesting that the encoder cannot
follow from where it is called (deeper than where the body was read) is encoded again on
a fresh thread's empty stack (`_on_a_fresh_stack`).

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["InvalidJSON", "decode", "encode", "encode_line", "encode_text"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _on_a_fresh_stack(encode: Callable[[Any], str], value: Any) -> str:
    """``encode(value)`` on a new thread, after it ran out of recursion here.

    A document nests at most as deep as the decoder could follow where its body was
    read; an endpoint writing it back is deeper in the stack, so the encoder can run out
    first. A new thread starts with an empty stack. Only on that rare path: the caller
    waits for it, as it waits for any encoding; the thread is joined.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(encode(value))
        except BaseException as exc:  # raised in the caller
            outcome.append(exc)

    thread = threading.Thread(target=run, name="asgikit-json-deep")
    thread.start()
    thread.join()
    result = outcome.pop()  # (emptied: the error's traceback holds run's frame, and so this list)
    if isinstance(result, BaseException):
        try:
            raise result
        finally:
            result = None  # (and this frame: no cycle left for the collector)
    text: str = result
    return text


def _encode_text(encoder: json.JSONEncoder, value: Any) -> str:
    """``encoder.encode(value)``, on a fresh stack if it runs out of recursion here. (The
    hot paths below inline the first try: a call costs more than a short document.)"""
    try:
        return encoder.encode(value)
    except RecursionError:
        return _on_a_fresh_stack(encoder.encode, value)


def encode(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes.

    `ValueError` for NaN or an infinity, `TypeError` for a value JSON cannot represent.
    Lone surrogates are escaped (``\\ud800``), so the result is always valid UTF-8.
    """
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        text = _on_a_fresh_stack(_ENCODER.encode, value)
    try:
        return text.encode()  # UTF-8 (naming the codec costs a lookup per call)
    except UnicodeEncodeError:
        # Only a lone surrogate makes this fail: escape everything non-ASCII instead.
        return _encode_text(_ASCII_ENCODER, value).encode("ascii")


def encode_line(value: Any) -> bytes:
    """`encode` plus ``\\n``: one line of NDJSON (one call per row, not two)."""
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        text = _on_a_fresh_stack(_ENCODER.encode, value)
    try:
        return (text + "\n").encode()
    except UnicodeEncodeError:
        return _encode_text(_ASCII_ENCODER, value).encode("ascii") + b"\n"


def encode_text(value: Any) -> str:
    """`encode` as a ``str`` (for WebSocket text frames): valid UTF-8 when encoded."""
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        text = _on_a_fresh_stack(_ENCODER.encode, value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _encode_text(_ASCII_ENCODER, value)
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
        return _decode(text)
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise InvalidJSON(str(exc)) from None
