"""Run a render under a time budget so a hostile template cannot stall the engine.

Jinja2 gives no hook inside a bare `{% for %}` loop, so a template such as three nested
empty loops over a long string would run for hours. Renders therefore run on worker
threads; when one overruns its budget the caller gets `RenderTimeout` at once and the
worker is interrupted with an asynchronous exception, which Python delivers at the next
bytecode boundary (memory blow-ups in a single C call are stopped earlier, by the size
checks in `cadence.adapters.render`).

The budget is the worker thread's CPU time where the platform measures it: on a busy
machine (other threads holding the GIL, other processes on the cores) an honest render's
wall time stretches, and a wall-clock budget failed first renders (which load locale data)
that took a tenth of it in CPU. Wall time is still bounded, at `WALL_ALLOWANCE` times the
budget.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Beyond this many wedged workers, refuse new renders instead of spawning threads forever.
MAX_WORKERS = 32
# However little CPU a render gets, it is stopped after this many times its budget in wall
# time: a caller waits a bounded time.
WALL_ALLOWANCE = 5.0


class RenderTimeout(Exception):
    """The render ran past its time budget (raised in the caller, injected into the worker)."""


class _Task(Generic[T]):
    """One render: the function, where its outcome lands, and who is running it."""

    __slots__ = ("cpu_clock", "cpu_start", "done", "error", "fn", "lock", "result", "state",
                 "thread_id")  # fmt: skip

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.state = "queued"  # queued -> running -> finished | abandoned
        self.thread_id = 0
        self.cpu_clock: int | None = None  # the worker's CPU-time clock, where there is one
        self.cpu_start = 0.0
        self.result: T | None = None
        self.error: BaseException | None = None

    def started(self) -> None:
        """Note the running worker and its CPU time so far (called on the worker)."""
        self.thread_id = threading.get_ident()
        try:
            self.cpu_clock = time.pthread_getcpuclockid(self.thread_id)
            self.cpu_start = time.clock_gettime(self.cpu_clock)
        except (AttributeError, OSError):  # no per-thread CPU clock here: wall time alone
            self.cpu_clock = None

    def cpu_used(self) -> float | None:
        """CPU seconds the worker has spent on this task, or None where that is unknown."""
        if self.cpu_clock is None:
            return None
        try:
            return time.clock_gettime(self.cpu_clock) - self.cpu_start
        except OSError:
            return None


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
        """Call `fn` on a worker and return its result; `RenderTimeout` once it has used
        `timeout` seconds of CPU (of wall time where that is not measured), or
        `WALL_ALLOWANCE` times that in wall time."""
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
        give_up = time.monotonic() + timeout * WALL_ALLOWANCE
        wait = timeout
        while not task.done.wait(wait):
            with task.lock:
                left = give_up - time.monotonic()
                used = 0.0 if task.state == "queued" else task.cpu_used()
                if task.state in ("queued", "running") and used is not None and left > 0:
                    if used < timeout:  # slowed down, not overrunning: wait for the rest
                        wait = max(min(timeout - used, left), 0.001)
                        continue
                if task.state == "running":
                    task.state = "abandoned"
                    _interrupt(task.thread_id)
                elif task.state == "queued":
                    task.state = "abandoned"
            break
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
                    task.started()
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
