"""Route identity: which route a request matched, as the outermost app names it.

A `MatchedRoute` is built once per route when it is registered (and once per mount
chain the route is reached through, then cached), never per request. The router stores
it as ``scope["route"]`` (and in every enclosing scope, up to the one the server passed
in) so middleware, metrics and tracing (``opentelemetry-instrumentation-asgi`` reads
``scope["route"].path_format``) see the template, not the raw path.
"""

from __future__ import annotations

import re

__all__ = ["MatchedRoute", "path_format"]

# The parameter syntax of asgikit._matcher: {name} or {name:converter}.
_PARAM_RE = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z_][a-zA-Z0-9_]*)?}")


def path_format(path: str) -> str:
    """``path`` with converters removed: ``"/users/{user_id:int}"`` -> ``"/users/{user_id}"``."""
    return _PARAM_RE.sub(r"{\1}", path)


class MatchedRoute:
    """The route a request matched: read it as ``request.route`` or ``scope["route"]``.

    ``path_format`` is the full path template with mount prefixes and without
    converters (``"/api/v2/users/{user_id}"``); ``name`` is the full name `url_path_for`
    takes (``"v2:user"``); ``methods`` the HTTP methods the route answers (``None`` for
    a WebSocket route). Immutable; one object per route and mount chain, so identity
    comparison (``is``) works.

    >>> MatchedRoute("/users/{user_id}", "user", ("GET", "HEAD")).path_format
    '/users/{user_id}'
    """

    __slots__ = ("methods", "name", "path_format")

    path_format: str
    name: str
    methods: tuple[str, ...] | None

    def __init__(self, path_format: str, name: str, methods: tuple[str, ...] | None) -> None:
        object.__setattr__(self, "path_format", path_format)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "methods", methods)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"MatchedRoute is read-only (tried to set {name!r})")

    def under(self, prefix_format: str, mount_name: str | None) -> MatchedRoute:
        """The same route seen through a mount at ``prefix_format`` named ``mount_name``."""
        name = self.name if mount_name is None else f"{mount_name}:{self.name}"
        return MatchedRoute(prefix_format + self.path_format, name, self.methods)

    def __repr__(self) -> str:
        methods = "" if self.methods is None else f", methods={list(self.methods)!r}"
        return f"MatchedRoute(path_format={self.path_format!r}, name={self.name!r}{methods})"
