"""PLACEHOLDER: WebSocket arrives with issue 6."""

from typing import Any


class WebSocketDisconnect(Exception):
    pass


class WebSocket:
    def __init__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


async def close_after_error(websocket: WebSocket) -> None:
    pass
