"""Temporal state resumed mid-film: where a chain of frames restarts, and the chains kept between calls.

A stabilizer's or a temporal model's output for frame t depends on every frame since its last
restart. A front end that is asked for frames in any order (the VapourSynth filter) or that splits
a film among workers cannot run from the film's start, so it restarts on a fixed grid: the chain
serving frames from ``s`` starts at `restart_point`, a frame that depends on ``s`` alone. A chain's
state after a run is kept (`Chains`), so sequential access continues it instead of rerunning it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence


def restart_point(s: int, grid: int, lead: int, lo: int, cuts: Sequence[bool]) -> int:
    """The frame a chain serving frames from ``s`` starts at.

    g = the last multiple of ``grid`` at least ``lead`` frames before ``s`` (or 0); the restart is the last
    frame from g to s flagged in ``cuts`` (a marked scene change), else g. ``cuts[k]`` is frame ``lo + k``'s
    flag, for frames ``lo`` .. at least ``s`` (``lo`` <= g).
    """
    g = max(0, (s - lead) // grid * grid)
    return max([g] + [lo + k for k in range(g - lo, s - lo + 1) if cuts[k]])


class Recent:
    """The last ``size`` values put, by key, for any thread."""

    def __init__(self, size: int) -> None:
        self.size, self.lock = size, threading.Lock()
        self.items: collections.OrderedDict = collections.OrderedDict()

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value):
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value

    def pop(self, key):
        """Take a value out (a chain's state is continued by one caller only)."""
        with self.lock:
            return self.items.pop(key, None)


class Chains(Recent):
    """Chain states by (restart frame, next frame): the state of the chain from that restart, having run
    up to that frame. `take` hands one to the caller that continues it; `keep` stores it again after."""

    def take(self, restart: int, frame: int):
        return self.pop((restart, frame))

    def keep(self, restart: int, frame: int, state) -> None:
        self.put((restart, frame), state)
