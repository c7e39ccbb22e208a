"""`Response` bodies, headers and cookies beyond the common case."""

from __future__ import annotations

from datetime import datetime

import pytest

from asgikit import Response
from asgikit.datastructures import MutableHeaders


@pytest.mark.parametrize("content", [bytearray(b"weights"), memoryview(b"weights")])
def test_binary_buffers_are_sent_as_bytes(content: bytearray | memoryview) -> None:
    response = Response(content, media_type="application/octet-stream")
    assert response.body == b"weights"
    assert (b"content-length", b"7") in response.raw_headers


def test_a_str_subclass_is_text() -> None:
    class Token(str):
        pass

    assert Response(Token("é")).body == "é".encode()


def test_content_that_is_not_bytes_or_text_points_to_json_response() -> None:
    with pytest.raises(TypeError, match="use JSONResponse"):
        Response({"a": 1})


def test_mutable_headers_are_taken_as_they_are() -> None:
    headers = MutableHeaders()
    headers["X-Model"] = "tiny"
    headers.append("Vary", "Accept")
    headers.append("Vary", "Origin")
    response = Response(b"ok", headers=headers)
    assert response.headers.getlist("vary") == ["Accept", "Origin"]
    assert response.headers["x-model"] == "tiny"


def test_a_naive_expiry_is_taken_as_utc_and_flags_are_optional() -> None:
    response = Response()
    response.set_cookie(
        "session", "abc", expires=datetime(2030, 1, 2, 3, 4, 5), samesite=None, path=None
    )
    (cookie,) = response.headers.getlist("set-cookie")
    assert cookie == "session=abc; expires=Wed, 02 Jan 2030 03:04:05 GMT"


def test_repr_names_the_class_and_status() -> None:
    assert repr(Response(status_code=204)) == "<Response status_code=204>"
