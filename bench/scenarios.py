"""The benchmark scenarios, shared by every app module in this folder.

Each app (``raw_app``, ``starlette_app``, ``falcon_app``, ``asgikit_app``) serves the
same paths with the same answers, so ``inproc.py`` can run them side by side and check each answer
before timing it.
"""

from __future__ import annotations

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
STREAM_CHUNKS = 100


def stream_chunk(i: int) -> bytes:
    """Chunk ``i`` of the stream scenario: 16 bytes (``b"chunk 000000042\\n"``)."""
    return b"chunk %09d\n" % i


STREAM_BODY = b"".join(stream_chunk(i) for i in range(STREAM_CHUNKS))
# SSE: one event per token, ``data: token 042\n\n``.
SSE_TOKENS = tuple(f"token {i:03d}" for i in range(STREAM_CHUNKS))
SSE_BODY = b"".join(b"data: " + token.encode() + b"\n\n" for token in SSE_TOKENS)
# NDJSON: one compact JSON document per row.
NDJSON_ROWS = tuple({"i": i, "token": f"token {i:03d}"} for i in range(STREAM_CHUNKS))
NDJSON_BODY = b"".join(
    b'{"i":%d,"token":"token %03d"}\n' % (row["i"], row["i"]) for row in NDJSON_ROWS
)
