"""Every ``>>>`` example in asgikit's docstrings runs, and shows what it says.

Examples run like doctests (expected output and expected exceptions are checked with
doctest's own checker), with two additions: top-level ``await`` / ``async with`` work
(each docstring's examples share one event loop), and a small set of names that the
examples use without defining is provided here (``router`` serving ``/hello`` and an
echo WebSocket at ``/ws``, ``routes``, ``client``, ``model`` ...), as a project's
``doctest_namespace`` would; they run in a working directory holding ``static/`` and
``cards/model-card.md``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import importlib
import inspect
import io
import pkgutil
import sys
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import asgikit
import asgikit.middleware
import asgikit.serving
import asgikit.staticfiles
import asgikit.testing
from asgikit import Request, Router, WebSocket


def asgikit_modules() -> list[ModuleType]:
    names = [asgikit.__name__] + [
        info.name for info in pkgutil.walk_packages(asgikit.__path__, prefix="asgikit.")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for module in asgikit_modules():
        for test in finder.find(module):
            if test.examples:
                found.setdefault(test.name, test)  # re-exported objects: once
    return sorted(found.values(), key=lambda test: test.name)


class _Model:
    """What ``model`` stands for in the examples: something that generates tokens."""

    def generate(self, prompt: str) -> Iterator[str]:
        yield from prompt.split()

    async def stream(self, prompt: str) -> AsyncIterator[str]:
        for token in prompt.split():
            yield token

    def predict(self, texts: list[str]) -> list[int]:
        return [len(text) for text in texts]


def example_namespace() -> dict[str, Any]:
    router = Router()

    @router.get("/hello")
    async def hello(request: Request) -> str:
        return "Hello, world!"

    @router.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    async def get_user(request: Request) -> dict[str, Any]:
        return {"id": request.path_params.get("user_id")}

    namespace: dict[str, Any] = {name: getattr(asgikit, name) for name in asgikit.__all__}
    for module in (asgikit.middleware, asgikit.serving, asgikit.staticfiles, asgikit.testing):
        namespace.update({name: getattr(module, name) for name in module.__all__})

    async def send_email(to: str) -> None:
        pass

    def log_prediction(result: object) -> None:
        pass

    async def generate_ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    api_v2_router = Router()
    namespace.update(
        send_email=send_email,
        log_prediction=log_prediction,
        result={"label": "cat"},
        generate_ws=generate_ws,
        api_v2_router=api_v2_router,
        router=router,
        app=router,
        routes=[],
        get_user=get_user,
        model=_Model(),
        prompt="Once upon a time",
        SECRET="a long random secret key",
    )
    return namespace


CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


async def run_examples(test: doctest.DocTest, namespace: dict[str, Any]) -> None:
    stack = contextlib.AsyncExitStack()
    async with stack:
        if "client" not in test.globs:
            if any("await " in example.source for example in test.examples):
                client = asgikit.testing.AsyncTestClient(namespace["router"])
                namespace["client"] = await stack.enter_async_context(client)
            else:
                sync_client = asgikit.testing.TestClient(namespace["router"])
                namespace["client"] = stack.enter_context(sync_client)
        for example in test.examples:
            where = f"{test.name} (line {(test.lineno or 0) + example.lineno + 1})"
            code = compile(example.source, where, "single", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            output = io.StringIO()
            error: BaseException | None = None
            with contextlib.redirect_stdout(output):
                try:
                    result = eval(code, namespace)
                    if inspect.iscoroutine(result):
                        await result
                except Exception as exc:
                    error = exc
            if example.exc_msg is not None:
                assert error is not None, f"{where}: expected {example.exc_msg!r}, no error"
                got = traceback.format_exception_only(type(error), error)[-1]
                assert CHECKER.check_output(example.exc_msg, got, FLAGS), (
                    f"{where}: expected {example.exc_msg!r}, got {got!r}"
                )
                continue
            if error is not None:
                raise AssertionError(f"{where}: {example.source.strip()}") from error
            assert CHECKER.check_output(example.want, output.getvalue(), FLAGS), (
                f"{where}: expected {example.want!r}, got {output.getvalue()!r}"
            )


TESTS = docstring_tests()


def test_there_are_docstring_examples() -> None:
    assert len(TESTS) >= 20


@pytest.mark.parametrize("test", TESTS, ids=[test.name for test in TESTS])
def test_docstring_examples_run(
    test: doctest.DocTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Examples name files relative to the app's working directory: give them some.
    (tmp_path / "static").mkdir()
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "model-card.md").write_text("# A model\n")
    monkeypatch.chdir(tmp_path)
    namespace = {**test.globs, **example_namespace()}
    displayhook = sys.displayhook
    sys.displayhook = sys.__displayhook__  # pytest may replace it
    try:
        asyncio.run(run_examples(test, namespace))
    finally:
        sys.displayhook = displayhook
