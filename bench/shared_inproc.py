"""Run the shared harness (``../shared/bench/inproc.py``, read-only) with asgikit plugged in.

The harness loads ``apps.<name>``; this registers bench/asgikit_app.py as
``apps.asgikit_app`` (it imports the harness's own ``scenarios``, which defines the
same hello/json/route/stream scenarios) and hands the command line to the harness:

    .venv/bin/python bench/shared_inproc.py --apps raw,falcon_app,starlette_app,asgikit_app \\
        --scenarios hello,stream --no-routing

``SHARED_BENCH`` points at another copy of the harness.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# ../shared/bench beside the repository (or beside the folder of worktrees).
_CANDIDATES = [
    HERE.parent.parent / "shared" / "bench",
    HERE.parent.parent.parent / "shared" / "bench",
]
SHARED = Path(
    os.environ.get("SHARED_BENCH")
    or next((path for path in _CANDIDATES if path.is_dir()), _CANDIDATES[0])
)


def main() -> None:
    if not (SHARED / "inproc.py").is_file():
        raise SystemExit(f"the shared harness is not at {SHARED} (set SHARED_BENCH)")
    os.chdir(SHARED)
    sys.path[:0] = [str(SHARED)]  # its scenarios and apps come first
    harness = importlib.import_module("inproc")
    importlib.import_module("apps")
    # Our app module, imported by file so the shared `scenarios` is the one it sees.
    spec = importlib.util.spec_from_file_location("apps.asgikit_app", HERE / "asgikit_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["apps.asgikit_app"] = module
    spec.loader.exec_module(module)
    harness.main()


if __name__ == "__main__":
    main()
