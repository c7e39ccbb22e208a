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
            if not isinstance(value, UploadFile):
                raise ValueError(f"not one file: the part is a text field, {value!r}")
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


def test_a_filename_star_inside_a_quoted_value_is_text() -> None:
    # The quoted name and filename are values, whatever they contain: no part gains a
    # file name (or a path) from text inside them.
    with pytest.raises(ValueError, match="not one file"):
        filename_of("form-data; name=\"note; filename*=UTF-8''x.txt\"")
    tricky = 'form-data; name="f"; filename="report;filename*=UTF-8\'\'..%2Fpasswd.txt"'
    assert filename_of(tricky) == "report;filename*=UTF-8''..%2Fpasswd.txt"
    # A real filename* after such a value still counts.
    after = 'form-data; name="a; b"; filename="x"; filename*=UTF-8\'\'caf%C3%A9.txt'
    assert filename_of(after) == "café.txt"


@pytest.mark.parametrize("charset", ["undefined", "punycode", "utf\0-8", "idna"])
def test_any_charset_a_client_names_in_filename_star_falls_back(charset: str) -> None:
    disposition = f'form-data; name="f"; filename="plain.txt"; filename*={charset}\'\'%FF%FE'
    assert filename_of(disposition) == "plain.txt"
