"""Middleware declarations and the chain they build."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from asgikit.types import ASGIApp

__all__ = ["Middleware", "build_chain"]


class Middleware:
    """Declares one middleware: ``factory(app, *args, **options)`` must return an ASGI app.

    A factory is usually a class with ``__init__(self, app, **options)`` and an async
    ``__call__(scope, receive, send)``. In a list, the first middleware is the outermost.

    >>> app = Router(middleware=[Middleware(GZipMiddleware, minimum_size=1000)])
    """

    __slots__ = ("args", "factory", "options")

    def __init__(self, factory: Callable[..., ASGIApp], /, *args: Any, **options: Any) -> None:
        if not callable(factory):
            raise TypeError(f"Middleware needs a callable factory, not {factory!r}")
        self.factory = factory
        self.args = args
        self.options = options

    def __iter__(self) -> Iterator[Any]:
        return iter((self.factory, self.args, self.options))

    def __repr__(self) -> str:
        name = getattr(self.factory, "__name__", repr(self.factory))
        options = [repr(arg) for arg in self.args]
        options += [f"{key}={value!r}" for key, value in self.options.items()]
        return f"Middleware({', '.join([name, *options])})"


def build_chain(app: ASGIApp, middleware: Sequence[Middleware] | Iterable[Middleware]) -> ASGIApp:
    """Wrap ``app`` in ``middleware``, the first listed outermost."""
    for declared in reversed(list(middleware)):
        if not isinstance(declared, Middleware):
            raise TypeError(f"expected Middleware(factory, **options), not {declared!r}")
        app = declared.factory(app, *declared.args, **declared.options)
    return app
