"""What JSON cannot carry, through every server of the conformance suite.

- Numbers JSON cannot represent (``1e400``, ``-1e400``, ``NaN``, ``Infinity``, integers
  longer than Python converts) are refused by ``request.json()`` with a 400 and a detail,
  whichever writer (`JSONResponse`, `NDJSONResponse`, `EventSourceResponse`) would have
  answered, so no response path ever meets a value it cannot write.
- A lone surrogate (``"\\ud800"``, valid JSON) is written back escaped, as valid UTF-8,
  by all three writers.
- A stream whose item cannot be encoded half-way (or whose iterator raises) never hangs
  the client: the error is logged, the generator's ``finally`` runs, ``background`` does
  not run, and the client sees the failure (an incomplete chunked body) on every server
  but daphne, where the body ends after the last item that was sent (daphne cannot abort
  a started response; asgikit ends it rather than leave the client waiting).

The servers and fixtures are the conformance suite's (test_conformance.py).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import test_conformance as conformance
from _server import RunningServer

# The conformance suite's fixtures (each server started once for this module) and helpers.
data_file = conformance.data_file
server = conformance.server
client = conformance.client
token = conformance.token
wait_for_ending = conformance.wait_for_ending
DEADLINE = conformance.DEADLINE

# daphne has no way for an application to abort a started response: asgikit ends it.
ENDS_A_FAILED_STREAM = {"daphne"}

HOSTILE_NUMBERS = [
    pytest.param(b'{"x": 1e400}', "Invalid JSON: the number 1e400 is too large for a float"),
    pytest.param(b'{"x": -1e400}', "Invalid JSON: the number -1e400 is too large for a float"),
    pytest.param(b'{"x": [1, 2e999]}', "Invalid JSON: the number 2e999 is too large for a float"),
    pytest.param(b'{"x": NaN}', "Invalid JSON: NaN is not a JSON value"),
    pytest.param(b'{"x": Infinity}', "Invalid JSON: Infinity is not a JSON value"),
    pytest.param(b'{"x": -Infinity}', "Invalid JSON: -Infinity is not a JSON value"),
]
WRITERS = ["json", "ndjson", "sse"]


def post_json(client: httpx.Client, writer: str, body: bytes) -> httpx.Response:
    return client.post(
        f"/echo/{writer}", content=body, headers={"content-type": "application/json"}
    )


def document(writer: str, response: httpx.Response) -> bytes:
    """The one JSON document a writer sent: the body, its line, or its event's data."""
    if writer == "json":
        return response.content
    if writer == "ndjson":
        assert response.content.endswith(b"\n") and response.content.count(b"\n") == 1
        return response.content[:-1]
    assert response.content.startswith(b"data: ") and response.content.endswith(b"\n\n")
    return response.content[len(b"data: ") : -2]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("body", "detail"), HOSTILE_NUMBERS)
def test_numbers_json_cannot_carry_are_a_400(
    client: httpx.Client, writer: str, body: bytes, detail: str
) -> None:
    response = post_json(client, writer, body)
    assert response.status_code == 400
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize("writer", WRITERS)
def test_an_integer_longer_than_python_converts_is_a_400(client: httpx.Client, writer: str) -> None:
    response = post_json(client, writer, b'{"x": ' + b"7" * 5_000 + b"}")
    assert response.status_code == 400
    # (Python's own words: "(4300 digits)" from 3.11 on, "(4300) for integer string
    # conversion" on 3.10.)
    assert response.json()["detail"].startswith("Invalid JSON: Exceeds the limit (4300")


@pytest.mark.parametrize("writer", WRITERS)
def test_large_but_finite_numbers_echo_back(client: httpx.Client, writer: str) -> None:
    response = post_json(client, writer, b'{"x": [1e308, -1e308, 1e-400, 123456789012345678901]}')
    assert response.status_code == 200
    assert json.loads(document(writer, response)) == {
        "received": {"x": [1e308, -1e308, 0.0, 123456789012345678901]}
    }


@pytest.mark.parametrize("writer", WRITERS)
def test_a_lone_surrogate_echoes_back_escaped(client: httpx.Client, writer: str) -> None:
    # Valid JSON that a Python str holds but UTF-8 cannot: \ud800 alone, \udfff alone;
    # beside them a real pair (an emoji) and plain non-ASCII text.
    body = rb'{"s": "\ud800", "t": "x\udfffy", "pair": "\ud83d\ude00", "text": "caf\u00e9"}'
    response = post_json(client, writer, body)
    assert response.status_code == 200
    sent = document(writer, response)
    sent.decode("utf-8")  # the whole body is valid UTF-8
    assert rb'"\ud800"' in sent and rb'"x\udfffy"' in sent  # escaped, not dropped
    assert json.loads(sent) == {
        "received": {"s": "\ud800", "t": "x\udfffy", "pair": "\U0001f600", "text": "café"}
    }


# What goes wrong half-way, and what the server logs for it.
FAILURES = {
    "nan": "Out of range float values are not JSON compliant",
    "object": "Object of type Unencodable is not JSON serializable",
    "raise": "model crashed",
}
GOOD_LINES = {
    "ndjson": ['{"i":0}', '{"i":1}'],
    "sse": ['data: {"i":0}', "", 'data: {"i":1}', ""],
}


def wait_for_log(server: RunningServer, text: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"{server.name} never logged {text!r}"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", sorted(FAILURES))
@pytest.mark.parametrize("source", ["async", "sync"])
@pytest.mark.parametrize("writer", ["ndjson", "sse"])
def test_a_stream_failing_half_way_never_hangs_the_client(
    server: RunningServer, client: httpx.Client, writer: str, source: str, kind: str
) -> None:
    name = token()
    logged = server.log().count(FAILURES[kind])
    lines: list[str] = []
    failure: httpx.TransportError | None = None
    # A read timeout here is the hang this test exists to catch.
    with httpx.Client(base_url=server.url, timeout=DEADLINE) as reader:
        try:
            with reader.stream("GET", f"/unencodable/{writer}/{source}/{kind}/{name}") as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    lines.append(line)
        except httpx.TimeoutException as exc:
            pytest.fail(f"{server.name} left the client waiting after the error: {exc!r}")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            failure = exc
    assert lines == GOOD_LINES[writer]  # everything before the bad item, nothing after
    if server.name in ENDS_A_FAILED_STREAM:
        assert failure is None  # the body ended after the last good item
    else:
        assert isinstance(failure, httpx.RemoteProtocolError), failure  # incomplete body
        assert "incomplete chunked read" in str(failure)
    assert wait_for_ending(client, name) == "closed"  # the generator's finally ran
    wait_for_log(server, FAILURES[kind], logged + 1)  # the error is logged
    # background runs only after a complete body: never here (it would have run by now).
    assert client.get(f"/endings/{name}-background").json() == {"ending": None}


def test_daphne_keeps_reporting_errors_after_a_failed_stream(
    server: RunningServer, client: httpx.Client
) -> None:
    """daphne's answer to an error in a started, unfinished response stops its
    application checker (no more error logs, no reaping) for the life of the process;
    asgikit ends the body first, so the checker sees a finished response and goes on."""
    if server.name != "daphne":
        pytest.skip("daphne's application checker only")
    for _ in range(2):
        reported = server.log().count("Exception inside application: model crashed")
        name = token()
        assert client.get(f"/unencodable/ndjson/async/raise/{name}").status_code == 200
        wait_for_log(server, "Exception inside application: model crashed", reported + 1)
