"""The lifespan runner of the test clients: drives an app's ``lifespan`` scope.

Entering a client starts the app's lifespan as a task and waits for startup; leaving
asks for shutdown and waits for it. An app that raises before answering startup does
not support lifespan, and requests then run with no state (as under such a server).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc

from asgikit.types import ASGIApp, Message, Scope

__all__ = ["LifespanRunner"]


class LifespanRunner:
    """Drives the app's lifespan protocol; records whether the app supports it."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.events: list[Message] = [{"type": "lifespan.startup"}]
        self.inbox = anyio.Event()
        self.startup_done = anyio.Event()
        self.shutdown_done = anyio.Event()
        self.startup_failed: str | None = None
        self.shutdown_failed: str | None = None
        self.error: BaseException | None = None
        self.supported = True
        self._shutdown_requested = False

    async def receive(self) -> Message:
        if self._shutdown_requested or self.startup_done.is_set():
            await self.inbox.wait()
            return {"type": "lifespan.shutdown"}
        return {"type": "lifespan.startup"}

    async def send(self, message: Message) -> None:
        message_type = message["type"]
        if message_type == "lifespan.startup.complete":
            self.startup_done.set()
        elif message_type == "lifespan.startup.failed":
            self.startup_failed = message.get("message", "")
            self.startup_done.set()
        elif message_type == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif message_type == "lifespan.shutdown.failed":
            self.shutdown_failed = message.get("message", "")
            self.shutdown_done.set()

    async def run(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except Exception as exc:
            if not self.startup_done.is_set():
                if self.startup_failed is None:
                    self.supported = False  # raised without answering: no lifespan support
                else:
                    self.error = exc
            elif self.shutdown_failed is not None or self._shutdown_requested:
                self.error = exc
            else:
                self.error = exc
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self.run)
        await self.startup_done.wait()
        if self.startup_failed is not None:
            if self.error is not None:
                raise self.error
            raise RuntimeError(f"lifespan startup failed: {self.startup_failed}")

    async def shutdown(self) -> None:
        if not self.supported:
            return
        self._shutdown_requested = True
        self.inbox.set()
        await self.shutdown_done.wait()
        if self.error is not None:
            raise self.error
        if self.shutdown_failed is not None:
            raise RuntimeError(f"lifespan shutdown failed: {self.shutdown_failed}")
