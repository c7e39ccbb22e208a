"""TrustedHostMiddleware: answer only requests whose ``Host`` is one of ours.

Guards against Host-header attacks (poisoned password-reset links, cache poisoning):
requests and WebSocket handshakes naming another host are refused before the
application sees them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from asgikit.middleware._answers import host_header, request_target, send_error, send_redirect
from asgikit.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedHostMiddleware", "host_without_port"]

_CHECKED_HOSTS_SIZE = 1024
# A host name (letters, digits, "-", "_", dot-separated labels) or an IP address (IPv6
# without its brackets). Anything else (/, ?, #, \, @, spaces...) is not a host.
_HOST_SYNTAX = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|[0-9a-f:.]+")


def host_without_port(host: str) -> str:
    """The host name of a ``Host`` header value: lower case, port and trailing dot removed.

    IPv6 literals lose their brackets.

    >>> host_without_port("API.Example.com:8443")
    'api.example.com'
    >>> host_without_port("[::1]:8000")
    '::1'
    """
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    elif colon and not port and ":" not in name:
        host = name  # "example.com:" has an empty port
    return host[:-1] if host.endswith(".") else host


def _normalise_pattern(pattern: str) -> str:
    if not isinstance(pattern, str):
        raise TypeError(f"allowed_hosts entries must be str, not {type(pattern).__name__}")
    pattern = pattern.strip().lower()
    if pattern.startswith("[") and pattern.endswith("]"):
        pattern = pattern[1:-1]
    if pattern.endswith(".") and pattern != ".":
        pattern = pattern[:-1]
    if not pattern:
        raise ValueError("allowed_hosts entries must not be empty")
    if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and pattern[1] != "."):
        raise ValueError(
            f"invalid allowed host {pattern!r}: use an exact host ('example.com'), "
            "a subdomain wildcard ('*.example.com') or '*' for any host"
        )
    return pattern


class TrustedHostMiddleware:
    """Refuse requests whose ``Host`` header is not in ``allowed_hosts`` with ``400``.

    - ``allowed_hosts`` holds exact host names (``"api.example.com"``), subdomain
      wildcards (``"*.example.com"`` matches ``a.example.com`` and ``a.b.example.com``,
      not ``example.com`` itself) or ``"*"`` (any host, the default). Ports are ignored
      and matching is case-insensitive.
    - With ``www_redirect=True``, a request for ``example.com`` when only
      ``www.example.com`` is allowed is redirected there (``307``, path and query kept).
    - WebSocket handshakes are checked too and refused (``400`` through the
      ``websocket.http.response`` extension when the server has it, else a close before
      acceptance). ``lifespan`` passes through.

    >>> app = Router(routes, middleware=[
    ...     Middleware(TrustedHostMiddleware, allowed_hosts=["example.com", "*.example.com"]),
    ... ])
    """

    __slots__ = (
        "allow_any",
        "allowed_hosts",
        "app",
        "checked_hosts",
        "exact_hosts",
        "suffixes",
        "www_redirect",
    )

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str] = ("*",),
        www_redirect: bool = True,
    ) -> None:
        if isinstance(allowed_hosts, str):
            allowed_hosts = [allowed_hosts]
        patterns = [_normalise_pattern(pattern) for pattern in allowed_hosts]
        self.app = app
        self.allowed_hosts = tuple(patterns)
        self.www_redirect = www_redirect
        self.allow_any = "*" in patterns
        self.exact_hosts = frozenset(pattern for pattern in patterns if pattern[0] != "*")
        # "*.example.com" -> ".example.com": a suffix match needs at least one label before.
        self.suffixes = tuple(pattern[1:] for pattern in patterns if pattern.startswith("*."))
        # Host header value -> allowed?; bounded so hostile Host values cannot grow it.
        self.checked_hosts: dict[str, bool] = {}

    def is_allowed_host(self, host: str) -> bool:
        """Whether ``host`` (a host name without port, lower case) is allowed.

        >>> TrustedHostMiddleware(app, allowed_hosts=["*.example.com"]).is_allowed_host(
        ...     "api.example.com")
        True
        """
        if self.allow_any:
            return True
        if not _HOST_SYNTAX.fullmatch(host):
            return False  # "evil.com/.example.com" must not pass as a subdomain
        if host in self.exact_hosts:
            return True
        return bool(self.suffixes) and host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = host_header(scope)
        if header is None:
            await send_error(scope, send, 400, "Missing Host header")
            return
        allowed = self.checked_hosts.get(header)
        if allowed is None:
            allowed = self.is_allowed_host(host_without_port(header))
            if len(self.checked_hosts) < _CHECKED_HOSTS_SIZE:
                self.checked_hosts[header] = allowed
        if allowed:
            await self.app(scope, receive, send)
            return
        host = host_without_port(header)
        if self.www_redirect and f"www.{host}" in self.exact_hosts:
            scheme = scope.get("scheme", "http")
            location = f"{scheme}://www.{header.strip()}{request_target(scope)}"
            await send_redirect(scope, send, location, 307)
            return
        await send_error(scope, send, 400, "Invalid host header")
