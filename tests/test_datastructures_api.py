"""The mapping, URL and state behaviour of the data structures that the other tests skip.

Constructors refuse ambiguous arguments, comparisons and ``in`` give answers rather than
errors for values of other types, reprs show the content, and `UploadFile` writes to
a file it was given, in memory or on disk, with the same API.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from asgikit import URL, Headers, QueryParams, State, UploadFile
from asgikit.datastructures import FormData

pytestmark = pytest.mark.anyio


def test_headers_refuse_two_sources_at_once() -> None:
    with pytest.raises(TypeError, match="only one of headers, raw and scope"):
        Headers(raw=[(b"a", b"1")], scope={"headers": []})
    with pytest.raises(TypeError, match="only one of headers, raw and scope"):
        Headers({"a": "1"}, raw=[(b"a", b"1")])


def test_headers_read_like_a_case_insensitive_mapping() -> None:
    headers = Headers(raw=[(b"accept", b"text/plain"), (b"x-model", b"tiny"), (b"accept", b"*/*")])
    assert list(headers) == ["accept", "x-model", "accept"]
    assert headers.values() == ["text/plain", "tiny", "*/*"]
    assert "X-Model" in headers and "x-other" not in headers
    assert 42 not in headers and b"accept" not in headers  # other types: just not there
    assert headers == Headers(
        raw=[(b"x-model", b"tiny"), (b"accept", b"text/plain"), (b"accept", b"*/*")]
    )
    assert Headers({"Content-Type": "text/plain"}) == {"content-type": "text/plain"}
    assert Headers({"Content-Type": "text/plain"}) == {"Content-Type": "text/plain"}
    assert headers != ["accept"]  # not a mapping: never equal, never an error
    assert repr(Headers({"X-Model": "tiny"})) == "Headers([('x-model', 'tiny')])"


def test_query_params_from_nothing_and_their_repr() -> None:
    assert len(QueryParams()) == 0 and str(QueryParams(None)) == ""
    params = QueryParams("q=llama+3&n=2")
    assert repr(params) == "QueryParams('q=llama+3&n=2')"


def test_url_is_built_from_a_string_or_a_scope_not_both() -> None:
    with pytest.raises(TypeError, match="either url or scope"):
        URL("http://a/", scope={"type": "http", "path": "/", "headers": []})
    # No Host header and no server address: a relative URL with the path and query.
    url = URL(scope={"type": "http", "path": "/v1/models", "query_string": b"a=1", "headers": []})
    assert str(url) == "/v1/models?a=1"
    assert url.path == "/v1/models" and url.query == "a=1"


def test_url_compares_with_strings_and_urls_and_hashes_alike() -> None:
    url = URL("https://example.com:8443/v1?x=1")
    assert url == "https://example.com:8443/v1?x=1"
    assert url == URL("https://example.com:8443/v1?x=1")
    assert url != 8443 and url != b"https://example.com:8443/v1?x=1"
    assert len({url, URL(str(url))}) == 1
    assert repr(url) == "URL('https://example.com:8443/v1?x=1')"


def test_url_replace_brackets_an_ipv6_hostname() -> None:
    url = URL("http://user@127.0.0.1:8000/path")
    replaced = url.replace(hostname="::1", port=9000)
    assert str(replaced) == "http://user@[::1]:9000/path"
    assert replaced.hostname == "::1" and replaced.port == 9000
    assert str(url.replace(port=None)) == "http://user@127.0.0.1/path"


def test_state_deletes_and_reports_missing_attributes() -> None:
    state = State({"model": "tiny"})
    assert repr(state) == "State({'model': 'tiny'})"
    del state.model
    assert "model" not in state
    with pytest.raises(AttributeError, match="model"):
        del state.model


async def test_an_upload_given_a_bytes_buffer_stays_in_memory() -> None:
    upload = UploadFile(io.BytesIO(), filename="prompt.txt")
    assert upload.in_memory and upload.size is None
    await upload.write(b"hello ")
    await upload.write(b"world")
    assert upload.size == 11
    await upload.seek(0)
    assert await upload.read() == b"hello world"


async def test_an_upload_given_a_file_on_disk_works_through_the_thread_pool(
    tmp_path: Path,
) -> None:
    with open(tmp_path / "weights.bin", "w+b") as file:
        upload = UploadFile(file, filename="weights.bin", size=0)
        assert not upload.in_memory
        await upload.write(b"\x00" * 10)
        await upload.seek(2)
        await upload.write(b"\x01")  # writing inside the file does not shrink its size
        assert upload.size == 10
        await upload.seek(0)
        assert await upload.read() == b"\x00\x00\x01" + b"\x00" * 7


async def test_form_data_repr_lists_its_items() -> None:
    form = FormData([("model", "tiny"), ("n", "2")])
    assert repr(form) == "FormData([('model', 'tiny'), ('n', '2')])"
    await form.close()
