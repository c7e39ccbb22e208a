"""asgikit._tasks: per-loop state found from the thread, without asking asyncio."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import anyio
import pytest

from asgikit._tasks import NOWHERE, RUNNING, PerLoop


class State:
    bound: asyncio.AbstractEventLoop | None
    thread: int

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop


def fast_task(per_loop: PerLoop[State]) -> asyncio.Task[Any] | None:
    """What the hot paths read before they fall back on `PerLoop.bind` (None: they
    would fall back)."""
    try:
        return RUNNING[per_loop.here.state.bound]
    except (AttributeError, KeyError):
        return None


def test_an_unbound_state_is_bound_again_by_bind() -> None:
    per_loop = PerLoop(State)

    async def main() -> None:
        found = per_loop.bind()
        assert found is not None
        state, task = found
        state.bound = None  # its owner sends the hot path the slow way (an idle timer)
        assert fast_task(per_loop) is None
        assert per_loop.bind() == (state, task)  # the same state, bound again
        assert fast_task(per_loop) is task

    asyncio.run(main())


def test_bind_finds_the_running_task_and_remembers_the_loop() -> None:
    per_loop = PerLoop(State)

    async def main() -> None:
        assert fast_task(per_loop) is None  # nothing remembered yet
        found = per_loop.bind()
        assert found is not None
        state, task = found
        assert task is asyncio.current_task()
        assert state.loop is asyncio.get_running_loop() is state.bound
        assert state.thread == threading.get_ident()
        assert fast_task(per_loop) is task  # from now on: two dict lookups
        assert per_loop.bind() == (state, task)  # the same state for the same loop

        async def other() -> asyncio.Task[Any] | None:
            return fast_task(per_loop)

        child = asyncio.ensure_future(other())
        assert await child is child  # each task finds itself

    asyncio.run(main())


def test_a_new_loop_in_the_same_thread_gets_a_new_state() -> None:
    per_loop = PerLoop(State)

    async def bind() -> State:
        found = per_loop.bind()
        assert found is not None
        return found[0]

    first = asyncio.run(bind())
    # The first loop is closed: nothing runs on it, so the fast path finds nothing.
    assert fast_task(per_loop) is None
    second = asyncio.run(bind())
    assert second is not first and second.loop is not first.loop
    assert list(per_loop._states) == [second.loop]  # the closed loop was forgotten


def test_no_task_outside_asyncio_tasks() -> None:
    per_loop = PerLoop(State)
    assert per_loop.bind() is None  # no loop at all

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(lambda: done.set_result(per_loop.bind()))  # a callback, no task
        assert await done is None

    asyncio.run(main())


def test_no_task_under_trio() -> None:
    pytest.importorskip("trio")
    per_loop = PerLoop(State)

    async def main() -> None:
        assert per_loop.bind() is None
        assert fast_task(per_loop) is None

    anyio.run(main, backend="trio")


def test_each_thread_has_its_own_state() -> None:
    per_loop = PerLoop(State)
    seen: dict[str, tuple[State, bool]] = {}
    both_bound = threading.Barrier(2, timeout=10)

    def serve(name: str) -> None:
        async def main() -> None:
            found = per_loop.bind()
            assert found is not None
            both_bound.wait()  # both loops run at once now
            seen[name] = (found[0], fast_task(per_loop) is asyncio.current_task())

        asyncio.run(main())

    threads = [threading.Thread(target=serve, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen["a"][1] and seen["b"][1]
    assert seen["a"][0] is not seen["b"][0]
    assert seen["a"][0].thread != seen["b"][0].thread


def test_a_loop_moved_to_another_thread_is_forgotten_by_the_first() -> None:
    per_loop = PerLoop(State)
    loop = asyncio.new_event_loop()
    try:

        async def bind() -> State:
            found = per_loop.bind()
            assert found is not None
            return found[0]

        here = loop.run_until_complete(bind())
        result: list[State] = []
        thread = threading.Thread(target=lambda: result.append(loop.run_until_complete(bind())))
        thread.start()
        thread.join(timeout=10)
        there = result[0]
        assert there is not here and there.thread != here.thread
        assert here.bound is None  # this thread's state no longer finds tasks of that loop
        assert per_loop.here.state is here and fast_task(per_loop) is None
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_forgets_what_its_parent_remembered() -> None:
    per_loop = PerLoop(State)

    async def main() -> None:
        assert per_loop.bind() is not None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running anything else
            forgotten = per_loop.here.state is NOWHERE and not per_loop._states
            os.write(write, b"1" if forgotten else b"0")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert per_loop.here.state is not NOWHERE  # the parent remembers still

    asyncio.run(main())
