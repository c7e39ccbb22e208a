"""Form parsing through the public API: `Request.form`, `FormData`, `UploadFile`.

Bodies come from httpx (``data=`` / ``files=``) and by hand, fed through the test client;
every limit and every kind of bad input is checked for its status and ``detail``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Recorder, http_scope, receive_then_disconnect

from asgikit import FormData, Request, Router, UploadFile
from asgikit.testing import TestClient
from asgikit.types import Message

BOUNDARY = "testboundary7Yx"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED = "application/x-www-form-urlencoded"


async def describe(form: FormData) -> list[list[Any]]:
    """A JSON-able picture of a form: [name, value] or [name, {file facts}]."""
    out: list[list[Any]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            out.append(
                [
                    name,
                    {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "size": value.size,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "content": data.decode("latin-1") if len(data) < 200 else None,
                    },
                ]
            )
        else:
            out.append([name, value])
    return out


router = Router()


@router.post("/form")
async def form_endpoint(request: Request) -> Any:
    return await describe(await request.form())


@router.post("/limited")
async def limited_endpoint(request: Request) -> Any:
    limits = {key: int(value) for key, value in request.query_params.items()}
    return await describe(await request.form(**limits))


@router.post("/headers")
async def headers_endpoint(request: Request) -> Any:
    form = await request.form()
    upload = form["f"]
    assert isinstance(upload, UploadFile)
    return {"latin": form["latin"], "extra": upload.headers["x-extra"], "ct": upload.content_type}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(router) as client:
        yield client


def part(name: str, value: bytes, *, filename: str | None = None, extra: str = "") -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n"
    return head.encode() + value + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_multipart(client: TestClient, body: bytes | Iterator[bytes], path: str = "/form") -> Any:
    return client.post(path, content=body, headers={"content-type": MULTIPART})


# --------------------------------------------------------------------------- urlencoded


def test_urlencoded_fields_from_httpx(client: TestClient) -> None:
    response = client.post("/form", data={"a": "1", "text": "é & = + ?", "b": ["x", "y"]})
    assert response.status_code == 200
    assert response.json() == [["a", "1"], ["text", "é & = + ?"], ["b", "x"], ["b", "y"]]


def test_urlencoded_plus_blank_and_bare_names(client: TestClient) -> None:
    body = b"q=a+b%2Bc&empty=&bare&&x=%E2%82%AC"
    response = client.post("/form", content=body, headers={"content-type": URLENCODED})
    assert response.json() == [["q", "a b+c"], ["empty", ""], ["bare", ""], ["x", "€"]]


def test_urlencoded_split_into_tiny_chunks(client: TestClient) -> None:
    body = b"name=J%C3%BCrgen+M&list=1&list=2&last=" + b"z" * 50

    def one_byte_at_a_time() -> Iterator[bytes]:
        for index in range(len(body)):
            yield body[index : index + 1]

    response = client.post(
        "/form", content=one_byte_at_a_time(), headers={"content-type": URLENCODED}
    )
    assert response.json() == [
        ["name", "Jürgen M"],
        ["list", "1"],
        ["list", "2"],
        ["last", "z" * 50],
    ]


def test_empty_urlencoded_body_is_an_empty_form(client: TestClient) -> None:
    response = client.post("/form", content=b"", headers={"content-type": URLENCODED})
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"a=%zz", "Invalid percent-encoding '%zz'"),
        (b"a=ok&b=50%", "Invalid percent-encoding '%'"),
        (b"a=%E9t%E9", "Form field 'a' is not valid UTF-8"),
        (b"%FF=1", "Form field name is not valid UTF-8"),
    ],
)
def test_bad_urlencoded_is_400(client: TestClient, body: bytes, detail: str) -> None:
    response = client.post("/form", content=body, headers={"content-type": URLENCODED})
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_urlencoded_limits(client: TestClient) -> None:
    headers = {"content-type": URLENCODED}
    response = client.post("/limited?max_fields=2", content=b"a=1&b=2&c=3", headers=headers)
    assert response.status_code == 413
    assert "max_fields=2" in response.json()["detail"]
    response = client.post("/limited?max_fields=2", content=b"a=1&&b=2&", headers=headers)
    assert response.status_code == 200

    response = client.post("/limited?max_part_size=4", content=b"a=12345", headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"] == "Form field 'a' is larger than max_part_size=4 bytes"
    # The limit is on the decoded value: "%41%42%43%44" is 4 bytes.
    response = client.post("/limited?max_part_size=4", content=b"a=%41%42%43%44", headers=headers)
    assert response.json() == [["a", "ABCD"]]

    given: list[int] = []

    def endless_value() -> Iterator[bytes]:  # 4 MiB, but the parser must stop long before
        yield b"a=1&big="
        for index in range(1024):  # bounded, so a parser that reads on fails, not hangs
            given.append(index)
            yield b"x" * 4096

    response = client.post("/limited?max_size=10", content=b"a=1&b=" + b"2" * 10, headers=headers)
    assert response.status_code == 413
    assert response.json()["detail"] == "Request body is larger than max_size=10 bytes"

    response = client.post("/limited?max_part_size=1000", content=endless_value(), headers=headers)
    assert response.status_code == 413
    assert "'big' is larger than max_part_size=1000" in response.json()["detail"]
    assert len(given) < 1024  # it stopped reading on its own


# --------------------------------------------------------------------------- multipart


def test_multipart_fields_and_files_from_httpx(client: TestClient) -> None:
    image = bytes(range(256)) * 40
    response = client.post(
        "/form",
        data={"label": "cat", "note": "naïve"},
        files={
            "image": ("photo.png", image, "image/png"),
            "doc": ("notes.txt", b"line 1\r\nline 2\n", "text/plain"),
        },
    )
    assert response.status_code == 200
    fields = dict((name, value) for name, value in response.json())
    assert fields["label"] == "cat"
    assert fields["note"] == "naïve"
    assert fields["image"]["filename"] == "photo.png"
    assert fields["image"]["content_type"] == "image/png"
    assert fields["image"]["size"] == len(image)
    assert fields["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert fields["doc"]["content"] == "line 1\r\nline 2\n"


def test_file_content_with_crlf_and_boundary_lookalikes(client: TestClient) -> None:
    tricky = (
        b"\r\n\r\n--"
        + BOUNDARY[:-1].encode()
        + b"\r\n--"
        + BOUNDARY.encode()[:5]
        + b"\r\n-- "
        + BOUNDARY.encode()
        + b"--"
        + BOUNDARY.encode()
        + b"\r\r\n\n\r"
    )
    body = multipart(part("f", tricky, filename="t.bin"), part("after", b"ok"))
    response = post_multipart(client, body)
    assert response.status_code == 200
    (name, facts), after = response.json()
    assert name == "f"
    assert facts["content"] == tricky.decode("latin-1")
    assert after == ["after", "ok"]


def test_every_split_point_gives_the_same_form(client: TestClient) -> None:
    body = multipart(
        part("field", b"value\r\nwith CRLF"),
        part("file", b"\r\n--" + BOUNDARY.encode()[:4] + b"data\r", filename="a.txt"),
    )
    expected = post_multipart(client, body).json()
    assert expected[0] == ["field", "value\r\nwith CRLF"]
    for split in range(1, len(body)):
        chunks = [body[:split], body[split:]]
        assert post_multipart(client, iter(chunks)).json() == expected, split


def test_byte_by_byte_multipart(client: TestClient) -> None:
    body = multipart(part("a", b"1"), part("f", b"xyz\r\n", filename="f.txt"))
    one_byte_chunks = (body[index : index + 1] for index in range(len(body)))
    response = post_multipart(client, one_byte_chunks)
    assert response.json()[0] == ["a", "1"]
    assert response.json()[1][1]["content"] == "xyz\r\n"


def test_empty_file_and_empty_filename(client: TestClient) -> None:
    body = multipart(part("empty", b"", filename="empty.txt"), part("none", b"", filename=""))
    response = post_multipart(client, body)
    assert response.status_code == 200
    empty, none = response.json()
    assert empty[1]["filename"] == "empty.txt"
    assert empty[1]["size"] == 0
    assert empty[1]["content"] == ""
    assert none[1]["filename"] == ""  # a browser's empty file input is still a file part


def test_non_ascii_filenames(client: TestClient) -> None:
    response = client.post("/form", files={"f": ("naïve 文件.png", b"x", "image/png")})
    assert response.json()[0][1]["filename"] == "naïve 文件.png"

    rfc5987 = (
        'form-data; name="g"; filename="fallback.txt"; filename*=UTF-8\'\'%E2%82%AC%20rates.txt'
    )
    star_only = "form-data; name=\"h\"; filename*=utf-8'en'caf%C3%A9.txt"
    quoted = 'form-data; name="i"; filename="say %22hi%22.txt"'
    body = (
        b"".join(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n".encode()
            for disposition in (rfc5987, star_only, quoted)
        )
        + f"--{BOUNDARY}--\r\n".encode()
    )
    names = [facts["filename"] for _, facts in post_multipart(client, body).json()]
    assert names == ["€ rates.txt", "café.txt", 'say "hi".txt']


def test_hundred_small_files(client: TestClient) -> None:
    files = [
        ("files", (f"f{index}.txt", f"content {index}".encode(), "text/plain"))
        for index in range(100)
    ]
    response = client.post("/form", files=files)
    assert response.status_code == 200
    got = response.json()
    assert len(got) == 100
    assert [facts["content"] for _, facts in got] == [f"content {index}" for index in range(100)]


def test_part_headers_and_charset(client: TestClient) -> None:
    body = multipart(
        part(
            "latin", "café".encode("latin-1"), extra="Content-Type: text/plain; charset=latin-1\r\n"
        ),
        part("f", b"x", filename="x.bin", extra="X-Extra: yes\r\n"),
    )

    response = client.post("/headers", content=body, headers={"content-type": MULTIPART})
    assert response.json() == {"latin": "café", "extra": "yes", "ct": None}


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("query", "body", "detail"),
    [
        (
            "max_files=1",
            multipart(part("a", b"1", filename="a"), part("b", b"2", filename="b")),
            "max_files=1",
        ),
        ("max_fields=1", multipart(part("a", b"1"), part("b", b"2")), "max_fields=1"),
        ("max_part_size=3", multipart(part("a", b"1234")), "'a' is larger than max_part_size=3"),
        (
            "max_file_size=3",
            multipart(part("f", b"1234", filename="f.bin")),
            "'f.bin' is larger than max_file_size=3",
        ),
        ("max_size=50", multipart(part("a", b"x" * 100)), "max_size=50"),
    ],
)
def test_multipart_limits_are_413(client: TestClient, query: str, body: bytes, detail: str) -> None:
    response = post_multipart(client, body, f"/limited?{query}")
    assert response.status_code == 413
    assert detail in response.json()["detail"]


def test_limits_at_the_edge_pass(client: TestClient) -> None:
    body = multipart(part("a", b"123"), part("f", b"1234", filename="f.bin"))
    query = f"max_files=1&max_fields=1&max_part_size=3&max_file_size=4&max_size={len(body)}"
    response = post_multipart(client, body, f"/limited?{query}")
    assert response.status_code == 200


def test_max_size_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # a generator: sent chunked, no Content-Length
        yield multipart(part("a", b"x" * 60))

    response = post_multipart(client, chunks(), "/limited?max_size=50")
    assert response.status_code == 413
    assert "max_size=50" in response.json()["detail"]


def test_part_header_limits(client: TestClient) -> None:
    long_header = f"X-Long: {'a' * 9000}\r\n"
    response = post_multipart(client, multipart(part("a", b"1", extra=long_header)))
    assert response.status_code == 413
    assert "header" in response.json()["detail"]
    many = "".join(f"X-H{index}: v\r\n" for index in range(20))
    response = post_multipart(client, multipart(part("a", b"1", extra=many)))
    assert response.status_code == 413
    assert "16 headers per part" in response.json()["detail"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content_type", "body", "status", "detail"),
    [
        ("multipart/form-data", b"--x--\r\n", 400, "Missing boundary"),
        ("multipart/form-data; boundary=" + "b" * 71, b"", 400, "Invalid multipart boundary"),
        ('multipart/form-data; boundary="a\tb"', b"", 400, "Invalid multipart boundary"),
        (MULTIPART, part("a", b"1"), 400, "Unexpected end of multipart stream"),
        (MULTIPART, b"", 400, "Malformed multipart body"),
        (MULTIPART, multipart(part("a", b"1"))[:-8], 400, "Malformed multipart body"),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
            400,
            "Malformed segment header",
        ),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
            400,
            "Missing Content-Disposition",
        ),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
            f"--{BOUNDARY}--\r\n".encode(),
            400,
            "no name",
        ),
        (MULTIPART, multipart(part("a", b"\xff\xfe")), 400, "'a' is not valid utf-8"),
        ("text/plain", b"a=1", 415, "Unsupported form content type 'text/plain'"),
        ("application/json", b"{}", 415, "application/json"),
    ],
)
def test_bad_input(
    client: TestClient, content_type: str, body: bytes, status: int, detail: str
) -> None:
    response = client.post("/form", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_missing_content_type_is_415(client: TestClient) -> None:
    response = client.post("/form", content=b"a=1")
    assert response.status_code == 415
    assert "Content-Type" in response.json()["detail"]


def test_negative_limit_is_a_programmer_error() -> None:
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        return await describe(await request.form(max_files=-1))

    with TestClient(app) as client, pytest.raises(ValueError, match="max_files"):
        client.post("/", data={"a": "1"})


# --------------------------------------------------------------------------- caching and body()


def test_form_is_cached_and_body_after_form_raises() -> None:
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        first = await request.form()
        assert await request.form() is first
        assert await request.form(max_fields=0) is first  # cached: later limits do not apply
        with pytest.raises(RuntimeError, match="already streamed"):
            await request.body()
        return {"a": first["a"]}

    with TestClient(app) as client:
        assert client.post("/", data={"a": "1"}).json() == {"a": "1"}


def test_form_after_body_parses_the_cached_body() -> None:
    app = Router()

    @app.post("/")
    async def endpoint(request: Request) -> Any:
        raw = await request.body()
        form = await request.form()
        upload = form["f"]
        assert isinstance(upload, UploadFile)
        return {"raw": len(raw), "a": form["a"], "f": (await upload.read()).decode()}

    with TestClient(app) as client:
        response = client.post("/", data={"a": "1"}, files={"f": ("f.txt", b"hello")})
        assert response.json()["a"] == "1"
        assert response.json()["f"] == "hello"
        assert response.json()["raw"] > 0


# --------------------------------------------------------------------------- FormData, UploadFile


def test_formdata_is_an_immutable_multidict() -> None:
    upload = UploadFile(filename="f.txt")
    form = FormData([("a", "1"), ("b", "2"), ("a", "3"), ("f", upload)])
    assert form["a"] == "3"  # the last value
    assert form.get("a") == "3"
    assert form.get("missing") is None
    assert form.getlist("a") == ["1", "3"]
    assert form.getlist("missing") == []
    assert form.multi_items() == [("a", "1"), ("b", "2"), ("a", "3"), ("f", upload)]
    assert list(form.keys()) == ["a", "b", "f"]
    assert list(form.values()) == ["3", "2", upload]
    assert list(form.items()) == [("a", "3"), ("b", "2"), ("f", upload)]
    assert "a" in form and "zzz" not in form
    assert len(form) == 3
    assert FormData({"x": "1"}) == {"x": "1"}
    with pytest.raises(TypeError):
        form["a"] = "4"  # type: ignore[index]
    with pytest.raises(KeyError):
        form["missing"]


@pytest.mark.anyio
async def test_formdata_close_closes_files() -> None:
    upload = UploadFile(filename="f.txt")
    await upload.write(b"data")
    form = FormData([("f", upload), ("a", "1")])
    await form.close()
    assert upload.file.closed
    await form.close()  # twice is harmless


@pytest.mark.anyio
async def test_uploadfile_write_read_seek_and_spooling() -> None:
    upload = UploadFile(filename="x.bin", content_type="application/octet-stream")
    assert upload.size == 0
    await upload.write(b"hello ")
    await upload.write(b"world")
    assert upload.size == 11
    assert upload.in_memory
    assert await upload.seek(0) == 0
    assert await upload.read(5) == b"hello"
    assert await upload.read() == b" world"
    await upload.seek(0, 2)
    await upload.write(b"x" * (2 * 1024 * 1024))  # past 1 MiB: moves to disk
    assert not upload.in_memory
    assert upload.size == 11 + 2 * 1024 * 1024
    await upload.seek(0)
    assert (await upload.read(11)) == b"hello world"
    assert "x.bin" in repr(upload)
    await upload.close()
    assert upload.file.closed


# --------------------------------------------------------------------------- raw ASGI


async def call_raw(body_chunks: list[bytes], content_length: int) -> list[Message]:
    """POST /form straight through the router with a declared Content-Length."""
    send = Recorder()
    headers = [
        (b"host", b"test"),
        (b"content-type", MULTIPART.encode()),
        (b"content-length", str(content_length).encode()),
    ]
    scope = http_scope("/form", method="POST", headers=headers)
    await router(scope, receive_then_disconnect(*body_chunks), send)
    return send.messages


@pytest.mark.anyio
async def test_small_body_in_many_tiny_chunks_with_content_length() -> None:
    content = bytes(range(256)) * 8
    body = multipart(part("f", content, filename="f.bin"))
    sent = await call_raw([body[index : index + 1] for index in range(len(body))], len(body))
    assert sent[0]["status"] == 200
    facts = json.loads(sent[1]["body"])[0][1]
    assert facts["size"] == len(content)
    assert facts["sha256"] == hashlib.sha256(content).hexdigest()


@pytest.mark.anyio
async def test_more_body_than_content_length_is_400() -> None:
    body = multipart(part("a", b"1"))
    sent = await call_raw([body], len(body) - 10)
    assert sent[0]["status"] == 400
    assert b"Content-Length" in sent[1]["body"]


@pytest.mark.parametrize(
    "charset", ["base64", "rot13", "zlib", "hex", "no-such-charset", '"utf\0-8"']
)
def test_field_charset_that_is_not_a_text_encoding_is_400(client: TestClient, charset: str) -> None:
    body = multipart(part("a", b"hello", extra=f"Content-Type: text/plain; charset={charset}\r\n"))
    response = post_multipart(client, body)
    assert response.status_code == 400
    assert "charset" in response.json()["detail"]


@pytest.mark.parametrize("charset", ["undefined", "punycode", "idna"])
def test_field_charset_whose_codec_refuses_the_bytes_is_400(
    client: TestClient, charset: str
) -> None:
    # These codecs raise their own UnicodeError (not UnicodeDecodeError) on bad input.
    body = multipart(
        part("a", b"\xff\xfe-\x80", extra=f"Content-Type: text/plain; charset={charset}\r\n")
    )
    response = post_multipart(client, body)
    assert response.status_code == 400
    assert response.json()["detail"] == f"Form field 'a' is not valid {charset}"


SPOOL_SCRIPT = """
import os, resource, sys
import anyio
from asgikit import HTTPException
from asgikit.datastructures import Headers
from asgikit.forms import FormLimits, parse_form

boundary = "fdlimit"
parts = [(f"big{i}", b"x" * (1024 * 1024)) for i in range(8)]  # fills the memory budget
parts += [(f"tiny{i}", b"y") for i in range(int(sys.argv[1]))]  # then one file each on disk
body = b"".join(
    f'--{boundary}\\r\\nContent-Disposition: form-data; name="{name}"; filename="{name}"'
    f"\\r\\n\\r\\n".encode() + data + b"\\r\\n"
    for name, data in parts
) + f"--{boundary}--\\r\\n".encode()
headers = Headers(raw=[(b"content-type", f"multipart/form-data; boundary={boundary}".encode())])


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def chunks():
    for start in range(0, len(body), 65536):
        yield body[start : start + 65536]


async def main():
    before = open_fds()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + 40, hard))
    try:
        form = await parse_form(headers, chunks(), FormLimits())
    except HTTPException as exc:
        print(exc.status_code, exc.headers.get("Retry-After"), exc.detail)
    else:
        print("parsed", len(form))
        await form.close()
    print("leaked", open_fds() - before)


anyio.run(main)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_running_out_of_file_descriptors_while_spooling_is_a_503() -> None:
    # Each file past the in-memory budget holds a descriptor until the form is closed:
    # with the process's limit reached, the answer is "retry later", and nothing leaks.
    def run(tiny_files: int) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", SPOOL_SCRIPT, str(tiny_files)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    assert run(10) == ["parsed 18", "leaked 0"]
    assert run(100) == [
        "503 1 Too many open files to spool the upload to disk, retry later",
        "leaked 0",
    ]
