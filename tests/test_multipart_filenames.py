"""File names in multipart parts: RFC 5987 ``filename*`` as browsers and tools send it,
the plain ``filename`` as the fallback, and a clear 400 when there is no usable name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from asgikit import HTTPException, UploadFile
from asgikit.datastructures import Headers
from asgikit.forms import FormLimits, parse_form

BOUNDARY = "filenameBoundary7"


def filename_of(disposition: str) -> str | None:
    """The file name parse_form gives a one-part body with this Content-Disposition."""
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
    ).encode()
    headers = Headers(raw=[(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())])

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    async def main() -> str | None:
        form = await parse_form(headers, chunks(), FormLimits())
        try:
            (value,) = form.values()
            assert isinstance(value, UploadFile)
            return value.filename
        finally:
            await form.close()

    return anyio.run(main)


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        # Quoted although RFC 5987 says not to: seen in the wild, taken.
        ('form-data; name="f"; filename*="UTF-8\'\'caf%C3%A9.txt"', "café.txt"),
        # No charset: UTF-8.
        ("form-data; name=\"f\"; filename*=''na%C3%AFve.txt", "naïve.txt"),
        # Not an ext-value (no quotes) or an unknown charset: the plain name is used.
        ('form-data; name="f"; filename="plain.txt"; filename*=caf%C3%A9.txt', "plain.txt"),
        ('form-data; name="f"; filename="plain.txt"; filename*=x-klingon\'\'abc', "plain.txt"),
        ('form-data; name="f"; filename="plain.txt"; filename*=UTF-8\'\'%FF%FE', "plain.txt"),
    ],
)
def test_extended_file_names_and_their_fallback(disposition: str, filename: str) -> None:
    assert filename_of(disposition) == filename


def test_an_unusable_extended_name_without_a_fallback_is_a_400_naming_the_part() -> None:
    with pytest.raises(HTTPException) as info:
        filename_of("form-data; name=\"upload\"; filename*=x-klingon''abc")
    assert info.value.status_code == 400
    assert "filename*" in info.value.detail and "'upload'" in info.value.detail
