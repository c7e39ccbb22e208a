"""The distribution as a user gets it: built with ``python -m build``, installed into a
fresh virtual environment, imported there.

The wheel is installed with its declared dependencies (resolved by pip from the package
index or pip's cache, as a user's install would), so a missing runtime dependency in the
metadata fails here. ``httpx`` is added because ``asgikit.testing`` needs it (a documented
test dependency, not a runtime one).
"""

from __future__ import annotations

import email.parser
import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("build")

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "asgikit-ml"  # the import name stays `asgikit`

# The public names of /work/shared/API.md (the contract), per module. Every name in each
# module's ``__all__`` is imported too, so names added later are covered as well.
CONTRACT = {
    "asgikit": [
        "Router", "Route", "Mount", "WebSocketRoute", "Middleware", "Request", "WebSocket",
        "WebSocketDisconnect", "UploadFile", "FormData", "Headers", "QueryParams", "URL",
        "State", "Response", "PlainTextResponse", "HTMLResponse", "JSONResponse",
        "RedirectResponse", "StreamingResponse", "FileResponse", "EventSourceResponse",
        "ServerSentEvent", "NDJSONResponse", "HTTPException", "BackgroundTask",
        "BackgroundTasks",
    ],
    "asgikit.testing": ["TestClient", "AsyncTestClient"],
    "asgikit.middleware": [
        "CORSMiddleware", "GZipMiddleware", "TrustedHostMiddleware", "HTTPSRedirectMiddleware",
        "SessionMiddleware", "ConcurrencyLimitMiddleware", "TimeoutMiddleware",
    ],
    "asgikit.staticfiles": ["StaticFiles"],
    "asgikit.serving": ["Batcher", "run_in_threadpool", "iterate_in_threadpool", "Overloaded"],
}  # fmt: skip

# Run inside the fresh venv: import every name, say where asgikit came from.
IMPORT_EVERYTHING = """
import importlib, json, sys
contract = json.loads(sys.argv[1])
imported = []
for module_name, names in contract.items():
    module = importlib.import_module(module_name)
    for name in sorted(set(names) | set(getattr(module, "__all__", ()))):
        getattr(module, name)  # AttributeError names the missing one
        imported.append(f"{module_name}.{name}")
import asgikit
print(json.dumps({"file": asgikit.__file__, "imported": imported}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel and sdist built from this checkout, and everything the build printed."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout + result.stderr


def only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def test_build_prints_no_deprecation(dist: tuple[Path, str]) -> None:
    _, output = dist
    assert "deprecat" not in output.lower(), output


def test_wheel_metadata_license_and_py_typed(dist: tuple[Path, str]) -> None:
    out, _ = dist
    wheel = only(out, "asgikit_ml-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License"] is None  # the deprecated free-text field is gone
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "asgikit/py.typed" in names
    assert "asgikit/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]
    requires = metadata.get_all("Requires-Dist") or []
    runtime = {r.split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r}
    assert runtime == {"anyio", "multipart", "typing-extensions"}


def test_sdist_ships_license_and_sources(dist: tuple[Path, str]) -> None:
    out, _ = dist
    sdist = only(out, "asgikit_ml-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "pyproject.toml", "asgikit/py.typed", "asgikit/__init__.py"} <= names


def test_wheel_installs_into_a_fresh_venv_and_imports_every_public_name(
    dist: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = dist
    wheel = only(out, "asgikit_ml-*.whl")
    env_dir = tmp_path / "venv"
    # No pip inside (fast); this interpreter's pip installs into it with --python.
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "install", "--quiet", str(wheel), "httpx"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Run from tmp_path so the checkout's asgikit/ cannot shadow the installed one.
    result = subprocess.run(
        [str(python), "-I", "-c", IMPORT_EVERYTHING, json.dumps(CONTRACT)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["file"]).is_relative_to(env_dir)
    for module_name, names in CONTRACT.items():
        for name in names:
            assert f"{module_name}.{name}" in report["imported"]
