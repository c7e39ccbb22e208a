"""The scenarios written the way asgikit's documentation teaches."""

from __future__ import annotations

from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates

from asgikit import JSONResponse, PlainTextResponse, Request, Router

HELLO_TEXT = HELLO_BODY.decode()


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(HELLO_TEXT)


async def json_doc(request: Request) -> JSONResponse:
    return JSONResponse(JSON_DOC)


async def user_item(request: Request) -> PlainTextResponse:
    params = request.path_params
    return PlainTextResponse(f"user {params['id']} item {params['item']}")


async def decoy(request: Request) -> PlainTextResponse:
    return PlainTextResponse("decoy")


def _add_decoys(router: Router, count: int) -> None:
    for template in decoy_templates(count):
        router.add_route(template, decoy)


app = Router()
app.add_route("/hello", hello)
app.add_route("/json", json_doc)
_add_decoys(app, N_DECOYS)
app.add_route(ROUTE_TEMPLATE, user_item)


def make_routing_app(n_routes: int) -> Router:
    router = Router()
    _add_decoys(router, n_routes - 1)
    router.add_route(ROUTE_TEMPLATE, user_item)
    return router
