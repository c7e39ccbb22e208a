"""`https_url`: where `HTTPSRedirectMiddleware` sends a request, for every shape of host."""

from __future__ import annotations

from typing import Any

import pytest

from asgikit.middleware.httpsredirect import https_url


def scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "path": "/v1/models",
        "query_string": b"",
        "headers": headers,
        **extra,
    }


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (b"[::1]:8080", "https://[::1]:8080/v1/models"),
        (b"[::1]", "https://[::1]/v1/models"),
        (b"[::1]:443", "https://[::1]/v1/models"),
        (b"example.com:80", "https://example.com/v1/models"),
    ],
)
def test_host_headers_with_and_without_ports(host: bytes, url: str) -> None:
    assert https_url(scope([(b"host", host)])) == url


def test_without_a_host_header_the_server_address_is_used() -> None:
    assert https_url(scope([], server=("::1", 8000))) == "https://[::1]:8000/v1/models"
    assert https_url(scope([], server=("10.0.0.2", None))) == "https://10.0.0.2/v1/models"


def test_without_host_or_server_there_is_no_url_to_build() -> None:
    with pytest.raises(ValueError, match="no Host and no server"):
        https_url(scope([]))
