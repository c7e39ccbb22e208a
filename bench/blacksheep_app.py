"""The scenarios written the way BlackSheep's documentation teaches.

``Application()`` with its router's ``add_get``/``add_post``, handlers answering with
``text()`` / ``json()``; the same registration order as the other apps (the scenario
routes, then the 100 parametric decoys, then ``/users/{id}/items/{item}``). BlackSheep
memoizes (method, path) -> match in a 1,200-entry cache, which the route-varied
scenario's 4,096 cycled paths defeat. Served end to end by ``e2e.py`` (BlackSheep starts
itself on the ASGI lifespan startup, or on its first request).
"""

# No ``from __future__ import annotations``: BlackSheep reads handler signatures when
# the app starts (parameter binders), as in its docs.

from collections.abc import AsyncIterator

import scenarios
from blacksheep import Application, Request, Response, StreamedContent, json, text
from blacksheep.server.sse import ServerSentEventsResponse, TextServerSentEvent
from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates

HELLO_TEXT = HELLO_BODY.decode()


async def hello() -> Response:
    return text(HELLO_TEXT)


async def json_doc() -> Response:
    return json(JSON_DOC)


async def user_item(id: str, item: str) -> Response:  # bound by name
    return text(f"user {id} item {item}")


async def decoy() -> Response:
    return text("decoy")


async def _chunks() -> AsyncIterator[bytes]:
    stream_chunk = scenarios.stream_chunk
    for i in range(scenarios.STREAM_CHUNKS):
        yield stream_chunk(i)


async def stream() -> Response:
    return Response(200, content=StreamedContent(b"text/plain; charset=utf-8", _chunks))


async def _events() -> AsyncIterator[TextServerSentEvent]:
    for token in scenarios.SSE_TOKENS:
        yield TextServerSentEvent(token)


async def sse() -> Response:
    return ServerSentEventsResponse(_events)


async def echo_json(request: Request) -> Response:
    return json(await request.json())


async def upload(request: Request) -> Response:
    # request.files(): the docs' way; every part is spooled (1 MiB in memory, then on
    # disk) and closed by the request's disposal after the response.
    files = await request.files(scenarios.UPLOAD_FIELD)
    if not files:
        return text("missing file field", status=400)
    return text(str(files[0].size))


app = Application()
app.router.add_get("/hello", hello)
app.router.add_get("/json", json_doc)
app.router.add_get("/stream", stream)
app.router.add_get("/sse", sse)
app.router.add_post("/echo-json", echo_json)
app.router.add_post("/upload", upload)
for _template in decoy_templates(N_DECOYS):
    app.router.add_get(_template, decoy)
app.router.add_get(ROUTE_TEMPLATE, user_item)
