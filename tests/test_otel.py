"""opentelemetry-instrumentation-asgi wrapping a Router sees route templates, not raw paths.

That package reads ``scope["route"].path_format`` once the app returns (in the installed
version it becomes the ``http.target`` attribute of the ``http.server.duration`` metric);
spans can be named by route from a middleware inside it (the recipe of docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asgikit import Mount, Request, Router
from asgikit.testing import TestClient
from asgikit.types import ASGIApp, Message, Receive, Scope, Send


class Telemetry:
    """An SDK tracer and meter whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def wrap(self, app: ASGIApp) -> Any:
        return OpenTelemetryMiddleware(
            app, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def duration_targets(self) -> set[str | None]:
        """``http.target`` of the ``http.server.duration`` data points (one per distinct
        attribute set)."""
        data = self.metrics.get_metrics_data()
        assert data is not None
        return set(
            point.attributes.get("http.target")
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "http.server.duration"
            for point in metric.data.data_points
        )

    def server_span_names(self) -> list[str]:
        return sorted(
            span.name
            for span in self.spans.get_finished_spans()
            if span.kind == trace.SpanKind.SERVER
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def make_app() -> Router:
    async def user(request: Request) -> dict[str, Any]:
        return {"id": request.path_params["user_id"]}

    v2 = Router()
    v2.add_route("/users/{user_id:int}", user, name="user")
    router = Router(routes=[Mount("/api/v2", v2, name="v2")])
    router.add_route("/users/{user_id:int}", user, name="user")
    return router


def get_users(app: Any) -> None:
    with TestClient(app) as client:
        assert client.get("/users/42").json() == {"id": 42}
        assert client.get("/api/v2/users/7").json() == {"id": 7}
        assert client.get("/nowhere").status_code == 404


def test_duration_metric_carries_the_route_template(telemetry: Telemetry) -> None:
    get_users(telemetry.wrap(make_app()))
    targets = telemetry.duration_targets()
    # The 404 has no route: the package then leaves http.target out of the metric.
    assert targets == {"/api/v2/users/{user_id}", "/users/{user_id}", None}


class NameSpanByRoute:
    """Renames the server span ``"{method} {route template}"`` and sets ``http.route``
    when the response starts (the router has matched by then; the span ends with the
    body, before the app returns)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()  # the server span OpenTelemetryMiddleware started

        async def send_naming_span(message: Message) -> None:
            route = scope.get("route")
            if message["type"] == "http.response.start" and route is not None:
                span.update_name(f"{scope['method']} {route.path_format}")
                span.set_attribute("http.route", route.path_format)
            await send(message)

        await self.app(scope, receive, send_naming_span)


def test_the_recipe_names_spans_from_any_app_that_sets_the_route(telemetry: Telemetry) -> None:
    class Tag:
        path_format = "/items/{item_id}"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        scope["route"] = Tag()  # what the Router does once it has matched
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with TestClient(telemetry.wrap(NameSpanByRoute(app))) as client:
        client.get("/items/1")
        client.get("/items/2")
    assert telemetry.server_span_names() == ["GET /items/{item_id}"] * 2
    assert telemetry.duration_targets() == {"/items/{item_id}"}


def test_spans_named_by_route_template(telemetry: Telemetry) -> None:
    get_users(telemetry.wrap(NameSpanByRoute(make_app())))
    names = telemetry.server_span_names()
    # Unmatched paths keep the package's default name (the raw path).
    assert names == ["GET /api/v2/users/{user_id}", "GET /nowhere", "GET /users/{user_id}"]
    routes = sorted(
        str(span.attributes.get("http.route"))
        for span in telemetry.spans.get_finished_spans()
        if span.kind == trace.SpanKind.SERVER and span.attributes
    )
    assert routes == ["/api/v2/users/{user_id}", "/users/{user_id}", "None"]
