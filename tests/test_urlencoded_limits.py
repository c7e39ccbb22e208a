"""An urlencoded body without ``Content-Length`` is still held to ``max_size``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from asgikit import HTTPException
from asgikit.datastructures import Headers
from asgikit.forms import FormLimits, parse_form


def test_a_streamed_urlencoded_body_over_max_size_is_a_413_before_it_is_all_read() -> None:
    chunks_read = 0

    async def chunked_body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(1000):
            chunks_read += 1
            yield b"prompt=" + b"x" * 100 + b"&"

    headers = Headers(raw=[(b"content-type", b"application/x-www-form-urlencoded")])

    async def main() -> None:
        await parse_form(headers, chunked_body(), FormLimits(max_size=1000))

    with pytest.raises(HTTPException) as info:
        anyio.run(main)
    assert info.value.status_code == 413
    assert "max_size=1000" in info.value.detail
    assert chunks_read < 20  # stopped at the limit, not after the whole body
