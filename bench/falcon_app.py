"""The scenarios written the way Falcon's (ASGI) documentation teaches.

Falcon is the fastest pure-Python peer on streams in the shared harness
(``../shared/bench``), so ``inproc.py`` runs it beside asgikit and Starlette.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator

import falcon
import falcon.asgi
import scenarios
from falcon.asgi import Request, Response, SSEvent
from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates

HELLO_TEXT = HELLO_BODY.decode()


class Hello:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = HELLO_TEXT


class JsonDoc:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = JSON_DOC


class UserItem:
    async def on_get(self, req: Request, resp: Response, id: str, item: str) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"user {id} item {item}"


class Decoy:
    async def on_get(self, req: Request, resp: Response, id: str, item: str) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "decoy"


async def _chunks() -> AsyncIterator[bytes]:
    stream_chunk = scenarios.stream_chunk
    for i in range(scenarios.STREAM_CHUNKS):
        yield stream_chunk(i)


class Stream:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = _chunks()


async def _events() -> AsyncIterator[SSEvent]:
    for token in scenarios.SSE_TOKENS:
        yield SSEvent(text=token)


class Sse:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.sse = _events()


async def _lines() -> AsyncIterator[bytes]:
    for row in scenarios.NDJSON_ROWS:
        yield json.dumps(row, separators=(",", ":")).encode() + b"\n"


class Ndjson:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = "application/x-ndjson"
        resp.stream = _lines()


class EchoJson:
    async def on_post(self, req: Request, resp: Response) -> None:
        resp.media = await req.get_media()


class Upload:
    async def on_post(self, req: Request, resp: Response) -> None:
        # Falcon's form is a stream of parts (nothing is spooled): as in its docs, the
        # file part is consumed chunk by chunk (here only counted), the rest read as text.
        size = None
        form = await req.get_media()
        async for part in form:
            if part.name == scenarios.UPLOAD_FIELD:
                size = 0
                async for chunk in part.stream:
                    size += len(chunk)
            else:
                await part.get_text()
        if size is None:
            raise falcon.HTTPBadRequest(description="missing file field")
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = str(size)


def _add_decoys(app: falcon.asgi.App, count: int) -> None:
    decoy = Decoy()
    for template in decoy_templates(count):
        app.add_route(template, decoy)


app = falcon.asgi.App()
# Compact JSON, as every other app sends (Falcon's default handler adds spaces), the way
# Falcon's docs customise a media handler.
app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
    dumps=functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
)
app.add_route("/hello", Hello())
app.add_route("/json", JsonDoc())
app.add_route("/stream", Stream())
app.add_route("/sse", Sse())
app.add_route("/ndjson", Ndjson())
app.add_route("/echo-json", EchoJson())
app.add_route("/upload", Upload())
_add_decoys(app, N_DECOYS)
app.add_route(ROUTE_TEMPLATE, UserItem())


def make_routing_app(n_routes: int) -> falcon.asgi.App:
    routing_app = falcon.asgi.App()
    _add_decoys(routing_app, n_routes - 1)
    routing_app.add_route(ROUTE_TEMPLATE, UserItem())
    return routing_app
