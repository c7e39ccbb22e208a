"""asgikit_app with ``Router(cancel_on_disconnect=True)``: what watching for disconnects
costs. Compare with ``python bench/inproc.py --apps raw_app,asgikit_app,asgikit_cancel_app``."""

from __future__ import annotations

from asgikit_app import _add_decoys, hello, json_doc, user_item
from scenarios import N_DECOYS, ROUTE_TEMPLATE

from asgikit import Router

app = Router(cancel_on_disconnect=True)
app.add_route("/hello", hello)
app.add_route("/json", json_doc)
_add_decoys(app, N_DECOYS)
app.add_route(ROUTE_TEMPLATE, user_item)


def make_routing_app(n_routes: int) -> Router:
    router = Router(cancel_on_disconnect=True)
    _add_decoys(router, n_routes - 1)
    router.add_route(ROUTE_TEMPLATE, user_item)
    return router
