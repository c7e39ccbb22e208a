"""Every ```python block of the docs pages runs as written.

The blocks of one page run in order in one namespace, so a page may build an example
up step by step. Fragments that cannot run alone (an ``await`` outside a function, a
name the page does not define) are fenced as ```py instead, which renders the same;
those are compiled (so they are valid Python) but not run. No block, run or not, may
import a private asgikit module: a user copying it would depend on an internal.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(path.relative_to(DOCS).with_suffix("").as_posix() for path in DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FRAGMENT = re.compile(r"^```py\n(.*?)^```", re.DOTALL | re.MULTILINE)
ANY_PYTHON = re.compile(r"^ *```(?:python|py)\n(.*?)^ *```", re.DOTALL | re.MULTILINE)


def page_blocks(page: str, pattern: re.Pattern[str] = BLOCK) -> list[str]:
    return [match.group(1) for match in pattern.finditer((DOCS / f"{page}.md").read_text())]


SIGNATURE = re.compile(r"\A[A-Za-z_]\w*\(\n.*\)\n\Z", re.DOTALL)


def as_module(code: str, filename: str = "<docs>") -> str:
    """The source a fragment is compiled as.

    A signature listing (``Name(\n    arg,\n    *,\n    option=default,\n)``) is
    checked as a ``def``; anything else as the body of an ``async def`` (fragments are
    often an endpoint's body: ``await``, ``return``).
    """
    if SIGNATURE.match(code):
        return f"def {code.rstrip()}: ...\n"
    return (
        "async def fragment():\n" + textwrap.indent(code.rstrip("\n") + "\n", "    ") + "    pass\n"
    )


def private_asgikit_imports(code: str) -> list[str]:
    """The private asgikit modules (a ``_name`` part) that `code` imports."""
    try:
        tree = compile(code, "<docs>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:  # a fragment: `return` outside a function, a signature listing
        tree = compile(as_module(code), "<docs>", "exec", ast.PyCF_ONLY_AST)
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            modules += [f"{node.module}.{alias.name}" for alias in node.names]
    return [
        module
        for module in modules
        if module.split(".")[0] == "asgikit"
        and any(part.startswith("_") and part != "__version__" for part in module.split("."))
    ]


def test_every_guide_page_is_collected() -> None:
    for page in ("index", "quickstart", "tutorial", "routing", "serving", "streaming", "asgi"):
        assert page in PAGES


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_run(page: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('/', '_')}"}
    for index, code in enumerate(page_blocks(page)):
        exec(compile(code, f"docs/{page}.md[block {index}]", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES)
def test_doc_fragments_compile(page: str) -> None:
    for index, code in enumerate(page_blocks(page, FRAGMENT)):
        compile(as_module(code), f"docs/{page}.md[fragment {index}]", "exec")


@pytest.mark.parametrize("page", PAGES)
def test_doc_examples_import_no_private_module(page: str) -> None:
    for index, code in enumerate(page_blocks(page, ANY_PYTHON)):
        private = private_asgikit_imports(code)
        assert not private, f"docs/{page}.md block {index} imports {private}"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_import_no_private_module(path: Path) -> None:
    assert private_asgikit_imports(path.read_text()) == []


def test_signature_listings_are_checked_as_signatures() -> None:
    compile(as_module("Thing(\n    app,\n    *,\n    size=1,  # a comment\n)\n"), "<t>", "exec")
    with pytest.raises(SyntaxError):
        compile(as_module("Thing(\n    size=1,\n    app,\n)\n"), "<t>", "exec")


def test_the_private_import_check_catches_them() -> None:
    assert private_asgikit_imports("from asgikit._concurrency import x") == [
        "asgikit._concurrency",
        "asgikit._concurrency.x",
    ]
    assert private_asgikit_imports("import asgikit.middleware._answers") != []
    assert private_asgikit_imports("from asgikit import _chain") == ["asgikit._chain"]
    assert private_asgikit_imports("from asgikit.serving import run_in_threadpool") == []
    assert private_asgikit_imports("from asgikit import __version__") == []


# An install command naming the distribution: ``asgikit`` alone on the package index is
# another project, so every command must say ``asgikit-ml`` (a warning that quotes the
# wrong command in backticks is prose, not a command, and is not matched).
WRONG_DISTRIBUTION = re.compile(r"(?:^|\s)['\"]?asgikit(?:\[[^\]]*\])?['\"]?(?=\s|$)")


def wrong_install_lines(text: str) -> list[str]:
    """The lines of ``text`` that run an install of ``asgikit`` rather than ``asgikit-ml``."""
    wrong = []
    for line in text.splitlines():
        stripped = line.strip()
        command = stripped.startswith(("pip ", "uv ", "pipx ", "poetry ")) or "RUN pip" in line
        if command and WRONG_DISTRIBUTION.search(stripped.split("#")[0]):
            wrong.append(line)
    return wrong


INSTALL_TEXTS = sorted(
    [*DOCS.rglob("*.md"), ROOT / "README.md", *(ROOT / "examples").rglob("*")],
    key=lambda path: path.as_posix(),
)


@pytest.mark.parametrize(
    "path",
    [path for path in INSTALL_TEXTS if path.is_file()],
    ids=lambda path: path.relative_to(ROOT).as_posix(),
)
def test_install_commands_name_this_distribution(path: Path) -> None:
    assert wrong_install_lines(path.read_text(errors="replace")) == []


def test_the_install_check_catches_the_other_project() -> None:
    assert wrong_install_lines("pip install asgikit uvicorn\n") == ["pip install asgikit uvicorn"]
    assert wrong_install_lines("    pip install 'asgikit[metrics]'\n") != []
    assert wrong_install_lines("RUN pip install asgikit\n") != []
    assert wrong_install_lines("pip install asgikit-ml uvicorn  # asgikit is the import\n") == []
    prose = "the package index has another project: do not `pip install asgikit`"
    assert wrong_install_lines(prose) == []
