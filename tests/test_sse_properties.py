"""Property tests (hypothesis) for server-sent event framing.

The bytes `ServerSentEvent.encode` and `encode_event` write are read back here by a
parser that follows the WHATWG "Server-sent events" interpretation rules (written in
this file, from the specification, not from asgikit): every data, comment, event and id
comes back as it was sent (line breaks in data and comments normalised to LF), and no
value, however it is made, can end the event early or add a second one. Kept fast:
modest ``max_examples``, no deadline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgikit._sse import PING, ServerSentEvent, encode_comment, encode_data, encode_event

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Parsed:
    """What a browser's EventSource makes of a stream (plus the comments it skips)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    blocks: int = 0  # blank lines seen: each one ends an event block
    retry: int | None = None


def parse_stream(stream: bytes) -> Parsed:
    """The WHATWG event stream interpretation, section 9.2.6 (no reconnection logic)."""
    text = stream.decode("utf-8")  # the stream is UTF-8; decoding must not fail
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    assert lines[-1] == "", "the stream must end with a line break"
    parsed = Parsed()
    data: list[str] = []
    event_type = ""
    last_id = ""
    for line in lines[:-1]:
        if line == "":
            parsed.blocks += 1
            if data:
                parsed.events.append(
                    {"data": "\n".join(data), "event": event_type or "message", "id": last_id}
                )
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            parsed.comments.append(line[2:] if line.startswith(": ") else line[1:])
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            parsed.retry = int(value)
    return parsed


def normalised(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


# Any text a Python str can be sent as (lone surrogates have no UTF-8 form).
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
# Line breaks of every kind, often: the interesting inputs for a line-based format.
breaky = st.lists(
    st.one_of(texts, st.sampled_from(["\n", "\r", "\r\n", "\n\n", "\r\r", "\n\r", ":", "data: x"])),
    max_size=8,
).map("".join)
single_line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | breaky,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(breaky, children, max_size=3),
    max_leaves=10,
)


@SETTINGS
@given(
    data=st.one_of(st.none(), breaky),
    event=st.one_of(st.none(), single_line),
    id=st.one_of(
        st.none(), single_line.filter(lambda text: "\0" not in text), st.integers(0, 10**9)
    ),
    retry=st.one_of(st.none(), st.integers(0, 10**9)),
    comment=st.one_of(st.none(), breaky),
)
def test_every_field_round_trips_and_the_event_stays_one_block(
    data: str | None,
    event: str | None,
    id: str | int | None,
    retry: int | None,
    comment: str | None,
) -> None:
    encoded = ServerSentEvent(data, event=event, id=id, retry=retry, comment=comment).encode()
    parsed = parse_stream(encoded)
    assert parsed.blocks == 1  # exactly one blank line: nothing can start a second event
    assert parsed.retry == retry
    if comment is None:
        assert parsed.comments == []
    else:
        assert "\n".join(parsed.comments) == normalised(comment)
    if data is None:
        assert parsed.events == []  # no data: a browser dispatches nothing
    else:
        assert parsed.events == [
            {
                "data": normalised(data),
                "event": event or "message",
                "id": "" if id is None else str(id),
            }
        ]


@SETTINGS
@given(value=json_values, event=st.one_of(st.none(), single_line))
def test_json_data_is_one_line_that_parses_back(value: Any, event: str | None) -> None:
    encodings = [encode_event(value)]
    if value is not None:  # ServerSentEvent(None) is an event without data
        encodings.append(ServerSentEvent(value, event=event).encode())
    for encoded in encodings:
        parsed = parse_stream(encoded)
        assert parsed.blocks == 1
        (only,) = parsed.events
        if isinstance(value, str):
            assert only["data"] == normalised(value)
        else:
            assert "\n" not in only["data"]  # compact JSON escapes every line break
            assert json.loads(only["data"]) == value


@SETTINGS
@given(items=st.lists(st.one_of(breaky, json_values, st.binary(max_size=20)), max_size=6))
def test_a_stream_of_items_is_one_event_per_item(items: list[Any]) -> None:
    stream = b""
    expected = []
    for item in items:
        if isinstance(item, bytes):
            try:
                text = item.decode("utf-8")
            except UnicodeDecodeError:
                with pytest.raises(UnicodeDecodeError):
                    encode_event(item)
                continue
            expected.append(normalised(text))
        elif isinstance(item, str):
            expected.append(normalised(item))
        else:
            expected.append(json.loads(json.dumps(item)))
        stream += encode_event(item)
        stream += PING  # keep-alive comments between events change nothing
    parsed = parse_stream(stream)
    assert parsed.blocks == 2 * len(expected)
    got = [event["data"] for event in parsed.events]
    assert [
        value if isinstance(value, str) else json.loads(text)
        for value, text in zip(expected, got, strict=True)
    ] == expected
    assert parsed.comments == ["ping"] * len(expected)


@SETTINGS
@given(text=breaky)
def test_encode_data_and_encode_comment_round_trip(text: str) -> None:
    parsed = parse_stream(encode_data(text))
    assert parsed.blocks == 1
    assert [event["data"] for event in parsed.events] == [normalised(text)]
    parsed = parse_stream(encode_comment(text))
    assert parsed.blocks == 1
    assert parsed.events == []
    assert "\n".join(parsed.comments) == normalised(text)


@SETTINGS
@given(
    before=single_line,
    breaker=st.sampled_from(["\n", "\r", "\r\n", "\n\n"]),
    after=single_line,
    field_name=st.sampled_from(["event", "id"]),
)
def test_a_line_break_in_event_or_id_is_refused(
    before: str, breaker: str, after: str, field_name: str
) -> None:
    with pytest.raises(ValueError, match=field_name):
        ServerSentEvent("x", **{field_name: before + breaker + after})


@SETTINGS
@given(
    fields=st.fixed_dictionaries(
        {"data": texts, "event": single_line, "id": single_line.filter(lambda t: "\0" not in t)}
    ),
    retry=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_equal_events_encode_alike_and_repr_names_their_fields(
    fields: dict[str, str], retry: int | None
) -> None:
    first = ServerSentEvent(fields["data"], event=fields["event"], id=fields["id"], retry=retry)
    second = ServerSentEvent(fields["data"], event=fields["event"], id=fields["id"], retry=retry)
    assert first == second and first.encode() == second.encode()
    assert first != ServerSentEvent(fields["data"] + "!", event=fields["event"], id=fields["id"])
    assert first != fields["data"]  # never equal to a bare value
    shown = repr(first)
    assert shown.startswith("ServerSentEvent(") and f"data={fields['data']!r}" in shown
    assert ("retry=" in shown) is (retry is not None)


class Token(str):
    """A str subclass, as some tokenizers return."""


@SETTINGS
@given(text=breaky, as_bytes=st.booleans())
def test_bytes_and_str_subclasses_are_text_data(text: str, as_bytes: bool) -> None:
    value: Any = text.encode() if as_bytes else Token(text)
    for encoded in (ServerSentEvent(value, event="token").encode(), encode_event(value)):
        parsed = parse_stream(encoded)
        assert parsed.blocks == 1
        assert [event["data"] for event in parsed.events] == [normalised(text)]
