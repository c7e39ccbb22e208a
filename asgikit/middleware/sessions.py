"""SessionMiddleware: a JSON session dict kept in a signed, timestamped cookie.

The cookie value is ``payload.timestamp.signature``, each part base64url without
padding: ``payload`` is the compact JSON of the session, ``timestamp`` the Unix time it
was signed, ``signature`` the HMAC-SHA256 of ``payload.timestamp`` under the secret
key. The session is readable by the client (signed, not encrypted): keep secrets out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, Literal

from asgikit._http import parse_cookie_header
from asgikit.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SessionMiddleware", "sign_session", "unsign_session"]

logger = logging.getLogger("asgikit")

# Browsers drop cookies above ~4096 bytes (name, value and attributes together).
_COOKIE_SIZE_LIMIT = 4096
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_URLSAFE_BASE64 = re.compile(rb"[A-Za-z0-9_-]*")


def _b64decode(data: bytes) -> bytes:
    # Strict: any other character makes the cookie malformed (urlsafe_b64decode skips
    # what is not in its alphabet, so "sig!!!!" would read as "sig").
    if not _URLSAFE_BASE64.fullmatch(data):
        raise binascii.Error("not URL-safe base64")
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _signing_key(secret_key: str | bytes) -> bytes:
    key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    # A fixed purpose prefix: the same secret used elsewhere never yields these signatures.
    return hashlib.sha256(b"asgikit.sessions\x00" + key).digest()


def _signature(key: bytes, signed_part: bytes) -> bytes:
    return hmac.new(key, signed_part, hashlib.sha256).digest()


def sign_session(session: dict[str, Any], secret_key: str | bytes, timestamp: int) -> str:
    """The cookie value holding ``session`` signed with ``secret_key`` at ``timestamp``.

    Raises `TypeError` if the session holds values that are not JSON-serialisable.

    >>> value = sign_session({"user": 42}, "s3cret", timestamp=1_700_000_000)
    >>> unsign_session(value, "s3cret", max_age=None, now=1_700_000_000)
    {'user': 42}
    """
    return _sign(session, _signing_key(secret_key), timestamp)


def _sign(session: dict[str, Any], key: bytes, timestamp: int) -> str:
    try:
        payload = json.dumps(session, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"session values must be JSON-serialisable: {exc}") from None
    signed_part = _b64encode(payload.encode("utf-8")) + b"." + _b64encode(str(timestamp).encode())
    signature = _b64encode(_signature(key, signed_part))
    return (signed_part + b"." + signature).decode("ascii")


def unsign_session(
    value: str, secret_key: str | bytes, max_age: int | None, now: float
) -> dict[str, Any] | None:
    """The session in cookie ``value``, or ``None`` if it is malformed, tampered or expired.

    The signature is compared in constant time. ``max_age`` (seconds, ``None`` for no
    limit) is checked against the timestamp inside the signature, not against anything
    the browser says; a timestamp in the future is refused too.

    >>> unsign_session("not.a.cookie", "s3cret", max_age=3600, now=time.time()) is None
    True
    """
    return _unsign(value.encode("latin-1", "replace"), _signing_key(secret_key), max_age, now)


def _unsign(value: bytes, key: bytes, max_age: int | None, now: float) -> dict[str, Any] | None:
    parts = value.split(b".")
    if len(parts) != 3:
        return None
    payload, timestamp_part, signature = parts
    try:
        expected = _signature(key, payload + b"." + timestamp_part)
        if not hmac.compare_digest(_b64decode(signature), expected):
            return None
        timestamp = int(_b64decode(timestamp_part))
        session = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    # A minute of clock skew between workers is tolerated; beyond that it is not ours.
    if timestamp > now + 60 or (max_age is not None and now - timestamp > max_age):
        return None
    return session if isinstance(session, dict) else None


class SessionMiddleware:
    """Load ``scope["session"]`` (``request.session``) from a signed cookie; save it back.

    - The session is a plain dict of JSON-serialisable values, signed with
      HMAC-SHA256 under ``secret_key`` and timestamped.
    - A cookie that is malformed, tampered with or older than ``max_age`` seconds is
      ignored: the session starts empty, it is never an error.
    - The cookie is written only when the session changed during the request (its
      timestamp then restarts ``max_age``), and cleared with an expired cookie when the
      session was emptied.
    - Cookie attributes: ``Path=path``, ``Max-Age=max_age`` (none when ``None``: a
      browser-session cookie), ``HttpOnly`` unless ``http_only=False``,
      ``SameSite=same_site``, ``Secure`` when ``https_only`` (or ``same_site="none"``, which
      browsers accept only with ``Secure``), ``Domain`` when ``domain``.
    - WebSocket handshakes get the session too (read-only: changes are not saved).
      ``lifespan`` passes through.

    >>> app = Router(routes, middleware=[Middleware(SessionMiddleware, secret_key=SECRET)])
    """

    __slots__ = (
        "app",
        "cookie_attributes",
        "max_age",
        "secret_key",
        "session_cookie",
        "signing_key",
    )

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | bytes,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 3600,
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        *,
        path: str = "/",
        domain: str | None = None,
        http_only: bool = True,
    ) -> None:
        if not isinstance(secret_key, (str, bytes)) or not secret_key:
            raise ValueError("SessionMiddleware needs a non-empty secret_key (str or bytes)")
        if not session_cookie or any(char in session_cookie for char in ' =;,"\t\r\n'):
            raise ValueError(f"invalid session_cookie name {session_cookie!r}")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be a positive number of seconds or None, not {max_age}")
        if same_site.lower() not in ("lax", "strict", "none"):
            raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {same_site!r}")
        for option, text in (("path", path), ("domain", domain or "")):
            if any(char in text for char in ";\r\n\0") or not text.isascii():
                raise ValueError(
                    f"session cookie {option} {text!r} must be ASCII without ';', CR or LF"
                )
        self.app = app
        self.secret_key = secret_key
        self.signing_key = _signing_key(secret_key)
        self.session_cookie = session_cookie
        self.max_age = max_age
        attributes = f"; Path={path}"
        if domain:
            attributes += f"; Domain={domain}"
        if http_only:
            attributes += "; HttpOnly"
        attributes += f"; SameSite={same_site.capitalize()}"
        if https_only or same_site.lower() == "none":
            attributes += "; Secure"  # browsers reject SameSite=None without Secure
        self.cookie_attributes = attributes

    def _load(self, scope: Scope) -> tuple[dict[str, Any], bool]:
        """The request's session and whether the request carried a valid session cookie."""
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie = parse_cookie_header(value.decode("latin-1")).get(self.session_cookie)
                if cookie is not None:
                    session = _unsign(
                        cookie.encode("latin-1", "replace"),
                        self.signing_key,
                        self.max_age,
                        time.time(),
                    )
                    if session is not None:
                        return session, True
        return {}, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session, had_cookie = self._load(scope)
        scope["session"] = session
        if scope_type == "websocket":
            await self.app(scope, receive, send)
            return
        # A deep copy to compare with at the end: JSON values only, so JSON is exact.
        original = json.loads(json.dumps(session)) if session else {}

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = self._set_cookie_value(scope, original, had_cookie)
                if header is not None:
                    headers = [*message.get("headers", ()), (b"set-cookie", header)]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _set_cookie_value(
        self, scope: Scope, original: dict[str, Any], had_cookie: bool
    ) -> bytes | None:
        """The ``Set-Cookie`` value to send, or ``None`` when the session is unchanged."""
        session = scope.get("session")
        if not isinstance(session, dict):
            raise TypeError(f'scope["session"] must stay a dict, not {type(session).__name__}')
        if session == original:
            return None
        name = self.session_cookie
        if not session:
            if not had_cookie:
                return None
            cookie = f"{name}=; Max-Age=0; Expires={_EXPIRED}{self.cookie_attributes}"
            return cookie.encode("latin-1")
        value = _sign(session, self.signing_key, int(time.time()))
        cookie = f"{name}={value}{self.cookie_attributes}"
        if self.max_age is not None:
            cookie += f"; Max-Age={self.max_age}"
        if len(cookie) > _COOKIE_SIZE_LIMIT:
            logger.warning(
                "session cookie %r is %d bytes; browsers drop cookies over %d bytes",
                name,
                len(cookie),
                _COOKIE_SIZE_LIMIT,
            )
        return cookie.encode("latin-1")
