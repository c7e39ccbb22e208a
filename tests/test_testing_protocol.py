"""The test client checks the app's ASGI messages like a strict server would.

An app that breaks the HTTP message order fails the test with a `RuntimeError` that
says what it sent, instead of a response that no real server would have produced.
"""

from __future__ import annotations

import pytest

from asgikit.testing import TestClient
from asgikit.types import Message, Receive, Scope, Send

START: Message = {"type": "http.response.start", "status": 200, "headers": []}
BODY: Message = {"type": "http.response.body", "body": b"ok"}


def app_sending(*messages: Message) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        for message in messages:
            await send(message)

    return app


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ((START, START, BODY), "sent http.response.start twice"),
        ((BODY,), "http.response.body before http.response.start"),
        ((START, BODY, BODY), "http.response.body after the response ended"),
        ((START, {"type": "http.response.push", "path": "/x"}), "does not support"),
    ],
)
def test_a_broken_message_order_fails_the_test_saying_what_was_sent(
    messages: tuple[Message, ...], complaint: str
) -> None:
    client = TestClient(app_sending(*messages))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=complaint):
        client.get("/")
