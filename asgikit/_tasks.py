"""Per-loop state and the running asyncio task, found without a system call.

``asyncio.current_task()`` and ``asyncio._get_running_loop()`` check the process id on
every call (so that a forked child does not use its parent's loop): up to Python 3.11
that is a ``getpid()`` system call, about 200 ns on a VM, a tenth of a whole "hello"
request. asgikit needs the running task, and state kept per event loop (the timers
that start disconnect watchers), on every streamed response and every request under
cancel_on_disconnect. A `PerLoop` keeps that state in a thread-local slot, and the hot
path reads (a plain ``threading.local`` and a subscript: the cheapest lookups Python
has for these, about 40 ns together; a ``try`` costs nothing until it catches)::

    try:
        state = per_loop.here.state  # AttributeError: nothing bound in this thread yet
        task = RUNNING[state.bound]  # asyncio's table: loop -> the task taking a step
    except (AttributeError, KeyError):  # no task (or ``bound`` is None): the slow way
        found = per_loop.bind()  # remembered; None: not in an asyncio task

Why that is the right task: a loop has a running task only while it executes a step
of that task, in the thread that runs the loop. A state is bound to the thread that
made it (``bound`` is its loop, seen running there), and unbound (``bound = None``)
when its loop is seen running in another thread; a stopped or closed loop has no
running task, so then `PerLoop.bind` asks asyncio and remembers the answer. Its owner
may unbind it too, to send the next hot-path lookup the slow way (the disconnect
watching does while its timer is idle); `bind` binds it again. (The one
case this cannot tell apart: a loop that stopped here and now runs in another thread
that has not run asgikit since, in the very instant this thread runs a request on a
second loop. Servers run one loop per thread for their life.) A forked child forgets
everything its parent remembered.
"""

from __future__ import annotations

import asyncio
import os
import threading
from asyncio import _get_running_loop
from collections.abc import Callable
from threading import get_ident
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["NOWHERE", "RUNNING", "LoopState", "PerLoop"]


class LoopState(Protocol):
    """What a `PerLoop` keeps: state for one loop, in the thread that runs it."""

    # The loop, while this state is this thread's for it; None once the loop was seen
    # running in another thread, or when its owner unbound it (the hot path then
    # takes the slow way).
    bound: asyncio.AbstractEventLoop | None
    loop: asyncio.AbstractEventLoop
    thread: int


S = TypeVar("S", bound=LoopState)

# loop -> the task it is running: a dict up to Python 3.13; later versions keep it per
# thread (and their asyncio.current_task is fast): then RUNNING stays empty and every
# lookup takes the slow way, correct still.
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
RUNNING: dict[Any, asyncio.Task[Any]] = (
    _current_tasks if isinstance(_current_tasks, dict) else {}  # pragma: no branch
)


class _Nowhere:
    """The state of a thread that forgot its loop (a forked child): no task runs on
    ``None``."""

    bound = None


NOWHERE: Any = _Nowhere()  # stands in for any PerLoop's state type


class PerLoop(Generic[S]):
    """State for each asyncio loop, ``make(loop)``, found from the thread running it."""

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], S]) -> None:
        self.make = make
        # ``here.state``: this thread's, unset until `bind` (the hot path reads it). A
        # plain local: a subclass's attributes are looked up on the class first.
        self.here = threading.local()
        self._states: dict[asyncio.AbstractEventLoop, S] = {}
        _all.append(self)

    def bind(self) -> tuple[S, asyncio.Task[Any]] | None:
        """The slow way: the state for the loop running this thread (made when new, or
        when it was another thread's) and the running task; None outside an asyncio
        task (trio, a callback)."""
        loop = _get_running_loop()
        if loop is None:
            return None
        task = RUNNING.get(loop) if RUNNING is _current_tasks else asyncio.current_task(loop)
        if task is None:
            return None
        ident = get_ident()
        state = self._states.get(loop)
        if state is None or state.thread != ident:
            if state is not None:
                state.bound = None  # the loop moved here from another thread
            for closed in [known for known in self._states if known.is_closed()]:
                del self._states[closed]
            state = self._states[loop] = self.make(loop)
            state.thread = ident
        state.bound = loop  # (again, if its owner unbound it)
        self.here.state = state
        return state, task

    def _forget(self) -> None:
        self._states.clear()
        self.here.state = NOWHERE


_all: list[PerLoop[Any]] = []


def _forget_all() -> None:
    for per_loop in _all:
        per_loop._forget()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_forget_all)
