"""The scenarios written the way Starlette's documentation teaches."""

from __future__ import annotations

from scenarios import HELLO_BODY, JSON_DOC, N_DECOYS, ROUTE_TEMPLATE, decoy_templates
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

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


def _decoys(count: int) -> list[Route]:
    return [Route(template, decoy) for template in decoy_templates(count)]


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/json", json_doc),
        *_decoys(N_DECOYS),
        Route(ROUTE_TEMPLATE, user_item),
    ]
)


def make_routing_app(n_routes: int) -> Starlette:
    return Starlette(routes=[*_decoys(n_routes - 1), Route(ROUTE_TEMPLATE, user_item)])
