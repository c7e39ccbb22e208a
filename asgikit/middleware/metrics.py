"""Prometheus metrics: requests by route template, latency, in-flight, streams, batchers.

Needs the ``prometheus-client`` package (the ``metrics`` extra:
``pip install 'asgikit-ml[metrics]'``). Importing this module does not need it;
constructing a middleware, an endpoint or a collector does.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from asgikit.requests import Request
from asgikit.responses import Response
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = [
    "DURATION_BUCKETS",
    "UNMATCHED",
    "MetricsMiddleware",
    "metrics_endpoint",
    "register_batcher",
    "register_concurrency_limit",
]

UNMATCHED = "<unmatched>"
"""The ``route`` label of requests no route matched (404 scans are one series)."""

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
"""Default latency buckets (seconds): a few ms for a cached answer up to a long generation."""

_SIZE_BUCKETS = tuple(float(4**power) for power in range(2, 14))  # 16 B .. 64 MiB
_CHUNK_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)

# Client-chosen methods outside this set are one label value: a scanner sending random
# methods must not create series.
_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
_OTHER_METHOD = "OTHER"
# The status label when nothing was sent: the app raised (500), or it was cancelled, the
# client having left (499, nginx's "client closed request").
_NO_RESPONSE = {True: "500", False: "499"}


def _prometheus() -> Any:
    """The ``prometheus_client`` module, or an ImportError that says how to get it."""
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
        raise ImportError(
            "asgikit's metrics need the prometheus-client package: install the 'metrics' "
            "extra (pip install 'asgikit-ml[metrics]') or pip install prometheus-client"
        ) from exc
    return prometheus_client


def _default_registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    if registry is not None:
        return registry
    default: CollectorRegistry = _prometheus().REGISTRY
    return default


class _RequestMetrics:
    """The metric families of one (registry, namespace), created once and shared."""

    def __init__(
        self, registry: CollectorRegistry, namespace: str, buckets: Sequence[float]
    ) -> None:
        prometheus = _prometheus()
        common: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.requests = prometheus.Counter(
            "requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            **common,
        )
        self.duration = prometheus.Histogram(
            "request_duration_seconds",
            "Time from the request's arrival to the app's return (the whole body sent).",
            ("method", "route"),
            buckets=buckets,
            **common,
        )
        self.in_progress = prometheus.Gauge(
            "requests_in_progress",
            "HTTP requests being handled now.",
            ("method",),
            multiprocess_mode="livesum",
            **common,
        )
        self.response_size = prometheus.Histogram(
            "response_size_bytes",
            "Response body size in bytes.",
            ("method", "route"),
            buckets=_SIZE_BUCKETS,
            **common,
        )
        self.stream_duration = prometheus.Histogram(
            "stream_duration_seconds",
            "Streamed responses: time from the response start to the stream's end.",
            ("method", "route"),
            buckets=buckets,
            **common,
        )
        self.stream_chunks = prometheus.Histogram(
            "stream_chunks",
            "Streamed responses: non-empty body chunks sent per response.",
            ("method", "route"),
            buckets=_CHUNK_BUCKETS,
            **common,
        )
        self.in_progress_by_method = {
            method: self.in_progress.labels(method) for method in (*_METHODS, _OTHER_METHOD)
        }
        # Label lookups cost a lock and a few dict operations each; the children of a
        # (method, route[, status]) are cached here, bounded by routes x methods x statuses.
        self._finished: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._streams: dict[tuple[str, str], tuple[Any, Any]] = {}

    def finished(self, method: str, route: str, status: str) -> tuple[Any, Any, Any]:
        """The (requests, duration, response size) children for one outcome."""
        key = (method, route, status)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (
                self.requests.labels(method, route, status),
                self.duration.labels(method, route),
                self.response_size.labels(method, route),
            )
        return children

    def stream(self, method: str, route: str) -> tuple[Any, Any]:
        """The (stream duration, stream chunks) children of one route."""
        key = (method, route)
        children = self._streams.get(key)
        if children is None:
            children = self._streams[key] = (
                self.stream_duration.labels(method, route),
                self.stream_chunks.labels(method, route),
            )
        return children


# One set of families per registry and namespace: a registry refuses a second metric with
# the same name, and two apps (or a test's many routers) in one process may well share the
# default registry. Weak keys: a dropped registry takes its families with it.
_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _RequestMetrics]] = (
    weakref.WeakKeyDictionary()
)


def _request_metrics(
    registry: CollectorRegistry, namespace: str, buckets: Sequence[float]
) -> _RequestMetrics:
    by_namespace = _families.setdefault(registry, {})
    metrics = by_namespace.get(namespace)
    if metrics is None:
        metrics = by_namespace[namespace] = _RequestMetrics(registry, namespace, buckets)
    return metrics


class _Exchange:
    """One request's ``send``: notes the status, body size and chunks on the way out."""

    __slots__ = ("body_bytes", "chunks", "headers", "send", "started_at", "status", "streamed")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.body_bytes = 0
        self.chunks = 0
        self.streamed = False
        self.started_at = 0.0
        self.headers: Any = ()

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.body_bytes += len(body)
                self.chunks += 1
            if message.get("more_body", False):
                self.streamed = True
        elif kind == "http.response.start":
            self.status = message["status"]
            self.started_at = time.perf_counter()
            self.headers = message.get("headers", ())
        elif kind == "http.response.pathsend":  # the server sends a file: size from headers
            for name, value in self.headers:
                if name.lower() == b"content-length":
                    self.body_bytes += int(value)
        await self.send(message)


class MetricsMiddleware:
    """Record Prometheus metrics for every HTTP request, labelled by route template.

    Metrics (``{namespace}`` defaults to ``asgikit``):

    - ``{namespace}_requests_total{method,route,status}`` (counter)
    - ``{namespace}_request_duration_seconds{method,route}`` (histogram, until the app
      returns: a streamed body counts whole)
    - ``{namespace}_requests_in_progress{method}`` (gauge)
    - ``{namespace}_response_size_bytes{method,route}`` (histogram)
    - ``{namespace}_stream_duration_seconds{method,route}`` and
      ``{namespace}_stream_chunks{method,route}`` (histograms) for streamed responses
      (a body sent in more than one message), from the response start to the stream's end.

    ``route`` is the matched route's template, read from ``scope["route"].path_format``
    once the app returns (the router sets it; mount prefixes included, converters
    removed: ``/api/v2/users/{user_id}``), or ``"<unmatched>"``, so 404 scans add no
    series. Methods outside the standard nine are counted as ``OTHER``. ``status`` is the
    status sent; ``"500"`` if the app raised before sending one; ``"499"`` (nginx's
    "client closed request") if the request ended without a response otherwise (the
    client left and the handler was cancelled). Put it outermost, so shed (503) and timed
    out (504) requests are counted too. ``websocket`` and ``lifespan`` pass through.

    ``registry`` defaults to prometheus-client's default registry; middleware sharing a
    registry and a namespace share their metrics. Needs ``prometheus-client``
    (the ``metrics`` extra); ImportError otherwise.

    >>> app = Router(middleware=[Middleware(MetricsMiddleware)])
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "asgikit",
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.app = app
        self.registry = _default_registry(registry)
        self.namespace = namespace
        self._metrics = _request_metrics(self.registry, namespace, buckets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self._metrics
        method = scope["method"]
        if method not in _METHODS:
            method = _OTHER_METHOD
        in_progress = metrics.in_progress_by_method[method]
        exchange = _Exchange(send)
        in_progress.inc()
        started = time.perf_counter()
        failed = False  # a cancellation (the client left) is not the app's failure
        try:
            await self.app(scope, receive, exchange)
        except Exception:
            failed = True
            raise
        finally:
            ended = time.perf_counter()
            in_progress.dec()
            route = scope.get("route")
            template = getattr(route, "path_format", None) if route is not None else None
            route_label = template if isinstance(template, str) else UNMATCHED
            status = str(exchange.status) if exchange.status else _NO_RESPONSE[failed]
            requests, duration, size = metrics.finished(method, route_label, status)
            requests.inc()
            duration.observe(ended - started)
            size.observe(exchange.body_bytes)
            if exchange.streamed:
                stream_duration, stream_chunks = metrics.stream(method, route_label)
                stream_duration.observe(ended - exchange.started_at)
                stream_chunks.observe(exchange.chunks)


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def metrics_endpoint(registry: CollectorRegistry | None = None) -> Callable[[Request], Response]:
    """An endpoint answering the Prometheus exposition of ``registry``.

    Register it at the exact path scrapers ask for:
    ``router.add_route("/metrics", metrics_endpoint())`` (a route, not a mount: no
    ``307`` to ``/metrics/``). The format follows the scraper's ``Accept`` header (text
    or OpenMetrics) and sets the matching ``Content-Type``. Without ``registry``: the
    default registry, or, when ``PROMETHEUS_MULTIPROC_DIR`` is set (several worker
    processes), the metrics of every worker merged from that directory. It is a plain
    ``def`` endpoint: rendering runs in the thread pool.
    """
    prometheus = _prometheus()
    from prometheus_client.exposition import choose_encoder

    def metrics(request: Request) -> Response:
        source = registry
        if source is None:
            if _multiprocess_dir():
                from prometheus_client import multiprocess

                # A fresh registry per scrape: MultiProcessCollector reads the files then.
                source = prometheus.CollectorRegistry()
                multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
            else:
                source = prometheus.REGISTRY
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(source), headers={"content-type": content_type})

    return metrics


# Serving internals as Prometheus metrics: read at scrape time, never on the hot path.


def _stat(owner: object, name: str, *fallbacks: str) -> float | None:
    """``owner.stats.<name>`` (or the first fallback attribute of ``owner``), or None."""
    stats = getattr(owner, "stats", None)
    value = getattr(stats, name, None) if stats is not None else None
    for fallback in fallbacks:
        if value is not None:
            break
        value = getattr(owner, fallback, None)
    return float(value) if isinstance(value, (int, float)) else None


class _ServingCollector:
    """The collector of one (registry, namespace): every registered batcher and limit."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        # Weak: a batcher that is gone (its lifespan ended) drops out of the scrape.
        self.batchers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self.limits: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def describe(self) -> list[Metric]:
        return list(self._families(batchers={}, limits={}))

    def collect(self) -> Iterator[Metric]:
        return self._families(dict(self.batchers), dict(self.limits))

    def _families(self, batchers: dict[str, Any], limits: dict[str, Any]) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        prefix = f"{self.namespace}_batcher"
        batcher_families = (
            (
                GaugeMetricFamily,
                "queued",
                "Calls waiting for a batch now (queue depth).",
                ("queued",),
            ),
            (GaugeMetricFamily, "running", "Batches being computed now.", ()),
            (CounterMetricFamily, "batches", "Batches dispatched to the model.", ()),
            (CounterMetricFamily, "items", "Items dispatched to the model.", ()),
            (CounterMetricFamily, "shed", "Calls refused with Overloaded (503).", ()),
            (CounterMetricFamily, "timed_out", "Calls failed with QueueTimeout (504).", ()),
        )
        for family_type, field, documentation, fallbacks in batcher_families:
            family = family_type(f"{prefix}_{field}", documentation, labels=("batcher",))
            for name, batcher in sorted(batchers.items()):
                value = _stat(batcher, field, *fallbacks)
                if value is not None:
                    family.add_metric((name,), value)
            yield family
        prefix = f"{self.namespace}_concurrency_limit"
        limit_families = (
            (GaugeMetricFamily, "active", "Requests running in the app now.", ("active",)),
            (GaugeMetricFamily, "waiting", "Requests queued for a slot now.", ("waiting",)),
            (CounterMetricFamily, "shed", "Requests refused with 503.", ()),
        )
        for family_type, field, documentation, fallbacks in limit_families:
            family = family_type(f"{prefix}_{field}", documentation, labels=("limit",))
            for name, limit in sorted(limits.items()):
                value = _stat(limit, field, *fallbacks)
                if value is not None:
                    family.add_metric((name,), value)
            yield family


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _ServingCollector]] = (
    weakref.WeakKeyDictionary()
)


def _serving_collector(registry: CollectorRegistry | None, namespace: str) -> _ServingCollector:
    registry = _default_registry(registry)
    by_namespace = _collectors.setdefault(registry, {})
    collector = by_namespace.get(namespace)
    if collector is None:
        collector = by_namespace[namespace] = _ServingCollector(namespace)
        registry.register(collector)
    return collector


def register_batcher(
    batcher: object,
    name: str,
    *,
    registry: CollectorRegistry | None = None,
    namespace: str = "asgikit",
) -> None:
    """Expose a `Batcher`'s queue and counts as metrics labelled ``batcher=name``.

    ``{namespace}_batcher_queued`` (queue depth: what to autoscale on) and
    ``_running`` (gauges), ``_batches_total``, ``_items_total`` (their ratio is the mean
    batch size), ``_shed_total`` and ``_timed_out_total`` (counters), read from
    ``batcher.stats`` at scrape time, so serving costs nothing more. The batcher is held
    weakly; registering a name again replaces it. These are the serving process's own
    numbers: in multi-process mode (``PROMETHEUS_MULTIPROC_DIR``) they are not merged
    across workers.
    """
    _serving_collector(registry, namespace).batchers[name] = batcher


def register_concurrency_limit(
    middleware: object,
    name: str,
    *,
    registry: CollectorRegistry | None = None,
    namespace: str = "asgikit",
) -> None:
    """Expose a `ConcurrencyLimitMiddleware`'s load as metrics labelled ``limit=name``.

    ``{namespace}_concurrency_limit_active`` and ``_waiting`` (gauges: requests running
    and queued now) and ``_shed_total`` (503s), read at scrape time. Construct the
    middleware yourself to hold it
    (``app = ConcurrencyLimitMiddleware(router, max_concurrency=8)``). Held weakly; per
    process, like `register_batcher`.
    """
    _serving_collector(registry, namespace).limits[name] = middleware
