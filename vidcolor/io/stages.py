"""The threads of a streaming job: stages joined by bounded queues, and a stop that reaches them all.

Used by `VideoJob` (decode, model, encode) and `colorize_y4m` (read, model, write).
A stage blocked on a full or empty queue wakes every 0.1 s to see whether the job
stopped (an error in another stage, Ctrl-C), so no thread outlives its job.
"""

from __future__ import annotations

import os
import queue
import signal
import threading

QUEUE_FRAMES = 4  # batches in flight between two stages

#: the item after the last one.
END = object()


class Stopped(Exception):
    """The job stopped while this stage waited on a queue: the stage ends quietly."""


def put(q: queue.Queue, item, stop: threading.Event) -> None:
    """Put ``item`` when there is room, unless the job stops first (then raise `Stopped`)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            pass
    raise Stopped


def get(q: queue.Queue, stop: threading.Event):
    """The next item, unless the job stops first (then raise `Stopped`)."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            pass
    raise Stopped


class Worker(threading.Thread):
    """A stage's thread; what it raises is kept in ``error`` for the main thread to raise."""

    def __init__(self, target, name):
        super().__init__(name=name, daemon=True)
        self.target_fn = target
        self.error: BaseException | None = None

    def run(self):
        try:
            self.target_fn()
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc


class OneStop:
    """SIGINT/SIGTERM stop a job once: the first signal unwinds it as before, and any that come
    while it cleans up are dropped, so a second Ctrl-C cannot abort the cleanup (and leave the
    partial output behind). Only in the main thread, where Python runs signal handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stopping = False
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                prev = signal.getsignal(sig)
                if prev in (signal.SIG_IGN, None):
                    continue  # ignored stays ignored; None: not installed from Python
                self.previous[sig] = prev
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stopping:
            return  # already stopping: the cleanup must finish
        self.stopping = True
        prev = self.previous[signum]
        if callable(prev):
            prev(signum, frame)
        else:  # SIG_DFL: end the way the signal would have ended the process
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __exit__(self, *exc):
        for sig, prev in self.previous.items():
            signal.signal(sig, prev)
