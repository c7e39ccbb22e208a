"""The benchmark scenarios, shared by every app module in this folder.

Each app (``raw_app``, ``starlette_app``, ``asgikit_app``) serves the same paths with
the same answers, so ``inproc.py`` can run them side by side and check each answer
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
