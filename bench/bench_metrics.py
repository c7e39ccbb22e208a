"""What MetricsMiddleware costs per request: the bench hello/route apps with and without it.

In one process on one event loop (see ``inproc.py``: fresh scope and receive/send per
request, rounds interleaved, app order rotated). Reported: median microseconds per
request and the ratio to the same router without metrics (median of per-round ratios).

    .venv/bin/python bench/bench_metrics.py
    .venv/bin/python bench/bench_metrics.py --rounds 21
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asgikit_app
import inproc
from prometheus_client import CollectorRegistry

from asgikit.middleware import MetricsMiddleware


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch-seconds", type=float, default=0.05)
    args = parser.parse_args()
    apps = {
        "router": asgikit_app.app,
        "router+metrics": MetricsMiddleware(asgikit_app.app, registry=CollectorRegistry()),
    }
    print(f"# bench/bench_metrics.py  python={platform.python_version()}  rounds={args.rounds}")
    print(f"{'scenario':<13}| " + " | ".join(f"{name:>26}" for name in apps))
    for scenario in ("hello", "route-varied"):
        paths, expected = inproc.SCENARIOS[scenario]
        for name, app in apps.items():
            await inproc.check(app, paths, expected, name)
        results = await inproc.measure(apps, paths, args.rounds, args.batch_seconds)
        cells = [f"{us:8.2f} us {ratio:6.2f}x router" for us, ratio in results.values()]
        print(f"{scenario:<13}| " + " | ".join(cells))


if __name__ == "__main__":
    asyncio.run(main())
