"""Start uvicorn as a subprocess on a free port of 127.0.0.1 and always stop it by its PID.

A thin layer over the shared server helper (tests/_server.py) for tests that only need
uvicorn serving an app from a directory.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from _server import free_port, start, stop, wait_for_log


@contextlib.contextmanager
def run_uvicorn(
    app: str,
    *,
    app_dir: Path,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    log: list[str] | None = None,
) -> Iterator[str]:
    """Serve ``app`` ("module:attribute") from ``app_dir``; yields the base URL once every
    worker has started. ``log``, if given, receives the server's log lines when it stops."""
    port = free_port()
    arguments = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir)]
    arguments += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"]
    if workers > 1:
        arguments += ["--workers", str(workers)]
    with tempfile.TemporaryDirectory() as tmp_dir:
        log_path = Path(tmp_dir) / "uvicorn.log"
        server = start("uvicorn", arguments, cwd=app_dir, log_path=log_path, port=port, env=env)
        try:
            wait_for_log(server, "Application startup complete", count=workers)
            yield server.url
        finally:
            stop(server)
            if log is not None:
                log.extend(server.log().splitlines(keepends=True))
