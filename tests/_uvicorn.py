"""Start uvicorn as a subprocess on a free port of 127.0.0.1 and always stop it by its PID."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path


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
    worker has started. The OS picks the port (uvicorn logs it). ``log`` collects the
    server's log lines as they come (read by a thread so a full pipe never blocks it)."""
    arguments = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir)]
    arguments += ["--host", "127.0.0.1", "--port", "0", "--lifespan", "on"]
    if workers > 1:
        arguments += ["--workers", str(workers)]
    process = subprocess.Popen(
        arguments,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines = log if log is not None else []
    try:
        assert process.stderr is not None
        url = None
        started = 0
        for line in process.stderr:  # ends if the server exits
            lines.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
            if "Application startup complete" in line:
                started += 1
            if url and started >= workers:
                break
        assert url and started >= workers, "uvicorn did not start:\n" + "".join(lines)
        stderr = process.stderr

        def drain() -> None:
            for line in stderr:
                lines.append(line)

        threading.Thread(target=drain, daemon=True).start()
        yield url
    finally:
        process.terminate()  # SIGTERM to the PID we started; with workers, it stops them
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
