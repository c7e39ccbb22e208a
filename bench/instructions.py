"""Instructions per request, counted by valgrind's callgrind: repeatable on a busy machine.

Wall-clock time on a shared VM drifts by tens of percent; the number of instructions
a request executes does not. For each app and scenario this runs the app's ASGI
callable in process (the request shape of `inproc.py`) twice under
``valgrind --tool=callgrind``, once with no timed requests and once with ``--requests``,
and prints the difference per request, and the ratio to the first app.

    python bench/instructions.py --apps raw_app,asgikit_app --scenarios hello,stream

Valgrind runs Python ~50x slower, so the time thresholds (when a streaming response's
disconnect listener starts, how often a stream that never waits gives the loop a turn,
when cancel_on_disconnect starts watching a request) are stretched by ``--slowdown``
to behave as they do at full speed. The cyclic garbage collector is off while
requests are counted (whether a full collection lands in one of the two runs would
otherwise decide the result): reference counting frees what requests leave behind,
and the count excludes collecting cycles. Needs the ``valgrind`` Debian package.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_requests(app_name: str, scenario: str, count: int, slowdown: float) -> None:
    """The measured program: ``count`` requests after a checked warm-up."""
    sys.path.insert(0, str(HERE))
    import inproc

    from asgikit import _dispatch, streaming

    streaming._LISTEN_AFTER *= slowdown
    streaming._TURN_EVERY *= slowdown
    _dispatch._WATCH_AFTER *= slowdown  # cancel_on_disconnect's watching timer
    app = importlib.import_module(app_name).app
    paths, expected = inproc.SCENARIOS[scenario]

    async def main() -> None:
        await inproc.check(app, paths, expected, app_name)
        scopes = [inproc.make_scope(path) for path in paths]
        for scope in scopes[:50]:
            connection = inproc.Connection()
            await app({**scope, "state": {}}, connection.receive, connection.send)
        gc.collect()
        gc.disable()  # a collection lands in one run and not the other: noise
        cycle = itertools.cycle(scopes)
        for _ in range(count):
            connection = inproc.Connection()
            await app({**next(cycle), "state": {}}, connection.receive, connection.send)

    asyncio.run(main())


def count_instructions(app_name: str, scenario: str, count: int, slowdown: float) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        f"{app_name}:{scenario}:{count}:{slowdown}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", default="raw_app,asgikit_app", help="first one: the baseline")
    parser.add_argument("--scenarios", default="hello,stream,sse")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--slowdown", type=float, default=50.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        app_name, scenario, count, slowdown = args.child.split(":")
        run_requests(app_name, scenario, int(count), float(slowdown))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    apps = args.apps.split(",")
    print(f"# bench/instructions.py  requests={args.requests}  (instructions per request)")
    print(f"{'scenario':<13}| " + " | ".join(f"{name:>26}" for name in apps))
    for scenario in args.scenarios.split(","):
        cells = []
        baseline = 0.0
        for name in apps:
            empty = count_instructions(name, scenario, 0, args.slowdown)
            full = count_instructions(name, scenario, args.requests, args.slowdown)
            per_request = (full - empty) / args.requests
            baseline = baseline or per_request
            cells.append(f"{per_request:12,.0f} {per_request / baseline:6.2f}x")
        print(f"{scenario:<13}| " + " | ".join(f"{cell:>26}" for cell in cells))


if __name__ == "__main__":
    main()
