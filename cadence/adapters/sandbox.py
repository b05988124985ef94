"""Run a render under a wall-clock budget so a hostile template cannot stall the engine.

Jinja2 gives no hook inside a bare `{% for %}` loop, so a template such as three nested
empty loops over a long string would run for hours. Renders therefore run on worker
threads; when one overruns its budget the caller gets `RenderTimeout` at once and the
worker is interrupted with an asynchronous exception, which Python delivers at the next
bytecode boundary (memory blow-ups in a single C call are stopped earlier, by the size
checks in `cadence.adapters.render`).
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Beyond this many wedged workers, refuse new renders instead of spawning threads forever.
MAX_WORKERS = 32


class RenderTimeout(Exception):
    """The render ran past its time budget (raised in the caller, injected into the worker)."""


class _Task(Generic[T]):
    """One render: the function, where its outcome lands, and who is running it."""

    __slots__ = ("done", "error", "fn", "lock", "result", "state", "thread_id")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.state = "queued"  # queued -> running -> finished | abandoned
        self.thread_id = 0
        self.result: T | None = None
        self.error: BaseException | None = None


def _interrupt(thread_id: int) -> None:
    """Raise `RenderTimeout` inside another thread at its next bytecode boundary."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(RenderTimeout)
    )


class BoundedRunner:
    """A small pool of daemon threads that runs callables with a deadline."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[_Task[object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._workers = 0

    def run(self, fn: Callable[[], T], timeout: float) -> T:
        """Call `fn` on a worker and return its result; `RenderTimeout` after `timeout` seconds."""
        task: _Task[T] = _Task(fn)
        with self._lock:
            if self._idle == 0:
                if self._workers >= MAX_WORKERS:
                    raise RenderTimeout("every render worker is busy with an overrunning template")
                self._workers += 1
                threading.Thread(target=self._work, name="cadence-render", daemon=True).start()
            else:
                self._idle -= 1
        self._tasks.put(task)  # type: ignore[arg-type]
        if not task.done.wait(timeout):
            with task.lock:
                if task.state == "running":
                    task.state = "abandoned"
                    _interrupt(task.thread_id)
                elif task.state == "queued":
                    task.state = "abandoned"
            if task.state == "abandoned":
                raise RenderTimeout(f"render took longer than {timeout:g}s")
        if task.error is not None:
            raise task.error
        return task.result  # type: ignore[return-value]

    def _work(self) -> None:
        """Worker loop; a late `RenderTimeout` meant for a finished task is swallowed."""
        while True:
            try:
                task = self._tasks.get()
                with task.lock:
                    if task.state == "abandoned":
                        self._park()
                        continue
                    task.state = "running"
                    task.thread_id = threading.get_ident()
                try:
                    task.result = task.fn()
                except BaseException as exc:
                    task.error = exc
                with task.lock:
                    if task.state == "running":
                        task.state = "finished"
                task.done.set()
                self._park()
            except RenderTimeout:
                self._park()

    def _park(self) -> None:
        """Count this worker as idle again."""
        with self._lock:
            self._idle += 1
