"""The benchmark scenarios, shared by every app module in this folder.

Each app (``raw_app``, ``starlette_app``, ``falcon_app``, ``blacksheep_app``,
``asgikit_app``) serves the same paths with the same answers, so ``inproc.py`` (in
process) and ``e2e.py`` (under real servers) can run them side by side and check each
answer before timing it. (``inproc.py`` does not load ``blacksheep_app``.)
"""

from __future__ import annotations

import json
import random

HELLO_BODY = b"Hello, world!"
JSON_DOC = {
    "message": "Hello, world!",
    "id": 42,
    "ok": True,
    "tags": ["fast", "typed", "asgi"],
    "score": 0.95,
}
ROUTE_TEMPLATE = "/users/{id}/items/{item}"
ROUTE_PATH = "/users/42/items/7"
# Distinct paths for the same route, cycled, so no per-path cache can help.
ROUTE_VARIED_PATHS = tuple(f"/users/{i}/items/{(i * 7) % 1000}" for i in range(4096))
N_DECOYS = 100


def decoy_templates(count: int) -> list[str]:
    """``count`` parametric templates that never match ROUTE_PATH: half fail on the
    first segment, half share the ``/users/{id}/`` prefix and fail on the third."""
    templates = []
    for index in range(count):
        if index % 2 == 0:
            templates.append(f"/res{index}/{{id}}/items/{{item}}")
        else:
            templates.append(f"/users/{{id}}/rel{index}/{{item}}")
    return templates


def route_body(path: str) -> bytes:
    """The answer to a GET of ``/users/{id}/items/{item}``."""
    _, _, user, _, item = path.split("/")
    return f"user {user} item {item}".encode()


# Streaming scenarios (the shared harness's "stream", plus SSE and NDJSON of the same size).
# The apps read these names per request: `set_stream_items` changes them for a run.
STREAM_CHUNKS = 100


def stream_chunk(i: int) -> bytes:
    """Chunk ``i`` of the stream scenario: 16 bytes (``b"chunk 000000042\\n"``)."""
    return b"chunk %09d\n" % i


def set_stream_items(count: int) -> None:
    """Make the stream, SSE and NDJSON scenarios ``count`` items long (100 unless
    changed). Timing them at 0 and at 100 items splits a response's cost into its
    fixed part and its cost per item: ``inproc.py --stream-items``."""
    global STREAM_CHUNKS, STREAM_BODY, SSE_TOKENS, SSE_BODY, NDJSON_ROWS, NDJSON_BODY
    STREAM_CHUNKS = count
    STREAM_BODY = b"".join(stream_chunk(i) for i in range(count))
    # SSE: one event per token, ``data: token 042\n\n``.
    SSE_TOKENS = tuple(f"token {i:03d}" for i in range(count))
    SSE_BODY = b"".join(b"data: " + token.encode() + b"\n\n" for token in SSE_TOKENS)
    # NDJSON: one compact JSON document per row.
    NDJSON_ROWS = tuple({"i": i, "token": f"token {i:03d}"} for i in range(count))
    NDJSON_BODY = b"".join(
        b'{"i":%d,"token":"token %03d"}\n' % (row["i"], row["i"]) for row in NDJSON_ROWS
    )


STREAM_BODY = b""
SSE_TOKENS: tuple[str, ...] = ()
SSE_BODY = b""
NDJSON_ROWS: tuple[dict[str, object], ...] = ()
NDJSON_BODY = b""
set_stream_items(STREAM_CHUNKS)


# Request bodies (the end-to-end bench, ``e2e.py``, POSTs them with wrk).
def echo_json_body() -> bytes:
    """The echo-json request: a ~1 KB JSON object (nested, mixed types), compact."""
    doc = {
        "model": "bench-classifier-v1",
        "request_id": "7f3c2a1e-0b4d-4e6f-9a8b-1c2d3e4f5a6b",
        "inputs": [
            {
                "id": i,
                "text": f"sample input number {i}",
                "weight": round(i * 0.125, 3),
                "flags": [i % 2 == 0, i % 3 == 0],
            }
            for i in range(12)
        ],
        "params": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 128, "stop": ["\n\n"]},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


UPLOAD_SIZE = 10 * 1024 * 1024  # the file part of the upload scenario: 10 MiB
UPLOAD_FIELD = "file"
NOTE_VALUE = b"benchmark upload"  # the small text field sent beside the file
BOUNDARY = "----asgikitbench7MA4YWxkTrZu0gW"
UPLOAD_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_body(size: int = UPLOAD_SIZE) -> bytes:
    """A multipart/form-data body: a text field "note" and a file field ``UPLOAD_FIELD``
    of ``size`` pseudo-random bytes (seeded, so every run sends the same bytes). The
    answer to POST /upload is the file's size in decimal."""
    data = random.Random(size).randbytes(size)
    boundary = BOUNDARY.encode()
    assert boundary not in data
    return b"".join(
        [
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="note"\r\n\r\n',
            NOTE_VALUE + b"\r\n",
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="' + UPLOAD_FIELD.encode() + b'"; '
            b'filename="blob.bin"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            data,
            b"\r\n--" + boundary + b"--\r\n",
        ]
    )
