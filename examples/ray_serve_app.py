"""The ML example (``ml_serving.py``) scaled out on Ray Serve: two replicas, each with its
own models and its own `Batcher`.

- ``@serve.ingress(build_router)`` takes a **builder function**, called in each replica
  when it starts: the models load there, and nothing of the driver is pickled (handing
  Ray a `Router` instance pickles it, and every module global it reaches, by value).
- **Batching is per replica**: the `Batcher` lives in the router's lifespan, which Ray
  runs once per replica. A batch fills only from the requests that replica holds, so
  ``max_ongoing_requests`` (requests Ray lets a replica hold at once; Ray's default is 5)
  must be well above ``max_batch_size``: here 64 against batches of up to 32, so one
  batch fills while the previous one computes. Above that, Ray queues requests in its
  proxy instead of handing them to a busy replica.
- asgikit's own concurrency limit (``max_concurrency``) is set to the same 64, so it never
  sheds what Ray has already admitted; Ray's limit is the one that queues.

Run it (``pip install 'ray[serve]'``, then from the repository root)::

    serve run --app-dir examples ray_serve_app:app        # HTTP on 127.0.0.1:8000
    python examples/ray_serve_app.py --port 8001          # the same, started from Python

and use it like the single-process example: ``curl -s localhost:8000/predict -d
'{"text": "for x in y:"}'``. ``GET /replica`` says which replica answered.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

if __name__ == "__main__":
    # Read when Ray is imported: a local run stays on loopback (Ray otherwise binds its
    # node to the host's network address) and reports no usage statistics.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ml_serving import make_router  # examples/ is on the path (--app-dir, PYTHONPATH)
from ray import serve

from asgikit import Request, Router

MAX_BATCH_SIZE = 32
MAX_ONGOING_REQUESTS = 64  # per replica: at least 2 x MAX_BATCH_SIZE so batches can fill


def build_router() -> Router:
    """The application of one replica (Ray calls this in the replica's process)."""
    router = make_router(
        max_batch_size=MAX_BATCH_SIZE,
        max_concurrency=MAX_ONGOING_REQUESTS,
        max_queue=MAX_ONGOING_REQUESTS,
    )

    @router.get("/replica")
    async def replica(request: Request) -> dict[str, object]:
        """Which replica answered, and whether its lifespan's models reach requests."""
        context = serve.get_replica_context()
        return {
            "replica": context.replica_id.unique_id,
            "pid": os.getpid(),
            "models_loaded": "classifier" in request.state,
        }

    return router


@serve.deployment(
    num_replicas=2,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    ray_actor_options={"num_cpus": 1},  # one core each: numpy runs one BLAS thread per call
    health_check_period_s=10,
    graceful_shutdown_timeout_s=30,  # in-flight streams get this long when a replica stops
)
@serve.ingress(build_router)
class MLServing:
    """The Ray Serve deployment: the ASGI app comes from `build_router`."""


app = MLServing.bind()  # type: ignore[attr-defined]  # a Deployment once decorated


def main() -> None:
    """Start a local Ray, serve `app` on ``--host``/``--port`` until SIGINT or SIGTERM."""
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    examples = os.path.dirname(os.path.abspath(__file__))
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        # The replicas import ml_serving and this module by name.
        runtime_env={"env_vars": {"PYTHONPATH": examples}},
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="ml", route_prefix="/")
        print(f"serving on http://{args.host}:{args.port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
