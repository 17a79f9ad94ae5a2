"""Fixed blocks of frames, computed once whichever VapourSynth thread asks first, and the helper clips
that bring a block's source frames (and those before it) to the filter."""

from __future__ import annotations

import collections
import threading

import vapoursynth as vs

core = vs.core
#: finished blocks kept when frames are asked for out of order (a later request recomputes them, identically).
MAX_PENDING_BLOCKS = 8


class Blocks:
    """Results of fixed blocks of frames, computed once whatever thread asks first."""

    class _Block:
        __slots__ = ("done", "result", "error", "taken", "size")

        def __init__(self, size):
            self.done, self.result, self.error, self.taken, self.size = threading.Event(), None, None, set(), size

    def __init__(self, compute):
        self.compute = compute
        self.lock = threading.Lock()
        self.blocks: collections.OrderedDict[int, Blocks._Block] = collections.OrderedDict()

    def get(self, b: int, i: int, size: int, frames, history=None):
        with self.lock:
            blk = self.blocks.get(b)
            leader = blk is None
            if leader:
                blk = self.blocks[b] = self._Block(size)
                # Bound memory when frames are requested and never all taken (random access):
                # drop the oldest finished blocks; a later request recomputes them, identically.
                while len(self.blocks) > MAX_PENDING_BLOCKS:
                    old = next(iter(self.blocks))
                    if not self.blocks[old].done.is_set():
                        break
                    del self.blocks[old]
        if leader:
            try:
                blk.result = (self.compute(b, frames[:size]) if history is None
                              else self.compute(b, frames[:size], history))
            except BaseException as exc:  # noqa: BLE001 - every waiter re-raises it
                blk.error = exc
            finally:
                blk.done.set()
        else:
            blk.done.wait()
        with self.lock:
            blk.taken.add(i)
            if (blk.error is not None or len(blk.taken) == blk.size) and self.blocks.get(b) is blk:
                del self.blocks[b]
        if blk.error is not None:
            raise blk.error
        return blk.result[i]


def per_block(c: vs.VideoNode, batch: int, n: int) -> vs.VideoNode:
    """``c`` (one frame per block) shown on each of its block's frames, cut or padded to ``n`` frames."""
    if batch > 1:
        c = core.std.Interleave([c] * batch, modify_duration=False)
    if c.num_frames < n:
        c = c + c[-1] * (n - c.num_frames)
    return c[:n]


def every(c: vs.VideoNode, batch: int, offset: int) -> vs.VideoNode:
    """Frames offset, offset + batch, ... of ``c`` (SelectEvery refuses a cycle of 1)."""
    return c[offset:] if batch == 1 else c.std.SelectEvery(cycle=batch, offsets=offset, modify_duration=False)


def block_clips(src: vs.VideoNode, batch: int) -> list[vs.VideoNode]:
    """Clip i shows, at frame n, source frame n // batch * batch + i (the last frame past the end)."""
    n = src.num_frames
    return [per_block(every(src, batch, i), batch, n) for i in range(min(batch, n))]


def history_clips(src: vs.VideoNode, batch: int, history: int) -> list[vs.VideoNode]:
    """Clip j shows, at frame n, source frame s - history + j with s = n // batch * batch (frame 0 before the start)."""
    n = src.num_frames
    padded = src[0] * history + src
    return [per_block(every(padded[j:], batch, 0), batch, n) for j in range(history)]
