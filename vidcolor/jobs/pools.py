"""Workers: each holds one loaded model and runs the ordinary engine on one file or segment at a time.

A local process pool (`--jobs N`, 'spawn' processes, the model loaded once per process by the pool's
initializer) or, with `--ray`, Ray actors on a Ray cluster, one loaded model each: Ray places them
(one per GPU, or `--jobs` on CPU), detects an actor whose process dies, restarts it (`max_restarts`)
and runs the interrupted call again (`max_task_retries`). Inputs are read and outputs written by
path: on a cluster the archive and OUTDIR must be on storage every node (and the driver) sees at the
same path. Errors come back to the driver as values, one line each.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import multiprocessing.util
import os
import pathlib
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from vidcolor.errors import InvalidInput, Interrupted, one_line
from vidcolor.io.engine import EncodeOptions
from vidcolor.atomic import sha256_file

#: how often a file is tried again after its worker process died under it (per run).
WORKER_DEATHS = 2


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What each worker needs to load its model."""

    model: str
    weights: str | None = None
    device: str = "auto"
    dtype: str | None = None
    batch: int = 8
    threads: int | None = None
    saturation: float = 1.0
    stabilize: bool = False
    #: a folder of references matched to the films by name (`references_for`), or None
    references: str | None = None


def references_for(folder: pathlib.Path, src: pathlib.Path) -> list[pathlib.Path]:
    """The pictures of ``folder`` named after the film ``src``: ``STEM.EXT`` or ``STEM.ANYTHING.EXT``."""
    from vidcolor.io.media import is_image

    stem = pathlib.Path(src).stem
    found = [p for p in pathlib.Path(folder).iterdir()
             if is_image(p) and (p.stem == stem or p.name.startswith(stem + "."))]
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class Task:
    key: str
    segment: int | None  # None: the whole file
    src: str
    dst: str
    opts: EncodeOptions
    #: the engine's progress bar (and notes) on the worker's stderr: one worker only, or bars collide.
    progress: bool = False

    @property
    def label(self) -> str:
        name = pathlib.Path(self.src).name
        return name if self.segment is None else f"{name} (segment {self.segment + 1})"


@dataclasses.dataclass
class WorkerState:
    """This worker process's model, read by the signal handler as well as by `work`."""

    spec: WorkerSpec | None = None
    colorizer: object = None  # a Colorizer, or its stabilized twin
    error: str | None = None  # loading the model failed: every task says so
    busy: bool = False  # inside the engine: SIGTERM unwinds it so that it removes its partial output


_WORKER = WorkerState()


def _load(spec: WorkerSpec) -> None:
    if _WORKER.spec == spec and (_WORKER.colorizer is not None or _WORKER.error):
        return
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    _WORKER.spec, _WORKER.colorizer, _WORKER.error = spec, None, None
    try:
        runtime = Runtime(device=spec.device, dtype=spec.dtype, batch=spec.batch, threads=spec.threads)
        colorizer = Colorizer(spec.model, spec.weights, runtime, saturation=spec.saturation)
        # The engine resets the stabilizer at the start of every file (and segment).
        _WORKER.colorizer = colorizer.stabilized() if spec.stabilize else colorizer
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the batch
        _WORKER.error = one_line(exc)


def _referenced(colorizer, task: Task):
    """The worker's colorizer with the film's references (planned on it), or as it is when it has none."""
    import warnings

    from vidcolor.io.reference import plan_video
    from vidcolor.io.reference import load_reference
    from vidcolor.temporal.reference import ReferenceWarning

    paths = references_for(pathlib.Path(_WORKER.spec.references), pathlib.Path(task.src))
    if not paths:
        return colorizer
    twin = colorizer.referenced([load_reference(p) for p in paths], names=[str(p) for p in paths])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReferenceWarning)
        plan_video(twin, pathlib.Path(task.src), task.opts)
    for w in caught:
        if issubclass(w.category, ReferenceWarning):
            print(f"vidcolor: warning: {task.src}: {w.message}", file=sys.stderr, flush=True)
    return twin


def work(task: Task) -> dict:
    """Colorize one file or segment with this process's model; errors come back as values."""
    from vidcolor.io.engine import VideoJob

    if _WORKER.error:
        return {"ok": False, "fatal": True, "error": f"loading the model failed: {_WORKER.error}"}
    _WORKER.busy = True
    try:
        colorizer = _WORKER.colorizer
        if _WORKER.spec.references:
            colorizer = _referenced(colorizer, task)
        job = VideoJob(task.src, task.dst, colorizer, task.opts, progress=task.progress)
        job.announce = False  # the model's line once per batch would do; not once per file
        stats = job.run()
        digest, size = sha256_file(task.dst), os.path.getsize(task.dst)
    except Interrupted:
        # SIGTERM from the driver or the pool: the engine has removed its temporary
        # output while unwinding; the process ends (the pool would otherwise keep it).
        _quit(128 + signal.SIGTERM)
    except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the batch goes on
        return {"ok": False, "error": one_line(exc)}
    finally:
        _WORKER.busy = False
    return {"ok": True, "frames": stats.frames, "seconds": stats.seconds, "sha256": digest, "size": size,
            "pid": os.getpid(), "damage": stats.damage}


def _quit(code: int) -> None:
    """End a pool worker now: the finalizers that release the named semaphores it made (e.g.
    tqdm's lock) first, then os._exit. Only those of priority >= 0: the lower ones join the result
    queue's feeder thread, which can block on a driver that stopped reading, and a worker stuck
    there is killed, its semaphores then reported leaked on the user's terminal."""
    with contextlib.suppress(Exception):
        multiprocessing.util._run_finalizers(0)
    os._exit(code)


def _on_sigterm(signum, frame):
    if _WORKER.busy:
        raise Interrupted(signum)  # unwinds the engine, which removes its temporary output
    _quit(128 + signum)  # idle: nothing to clean up


def _watch_parent(parent: int) -> None:
    # A worker whose driver was killed (SIGKILL) must not go on writing into OUTDIR.
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(70)  # at once, from this thread: the model thread may be in the middle of a frame


def _pool_init(spec: WorkerSpec, devices: list[str], counter, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides; it stops us with SIGTERM
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="vidcolor-watch").start()
    if devices:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        spec = dataclasses.replace(spec, device=devices[i % len(devices)])
    _load(spec)


class LocalPool:
    """`--jobs N` spawned processes, each with one model."""

    def __init__(self, spec: WorkerSpec, jobs: int, devices: list[str]):
        self.spec, self.jobs, self.devices = spec, jobs, devices
        self.name = f"{jobs} local worker{'s' if jobs > 1 else ''}"

    def run(self, tasks, started, finished) -> None:
        """Every task, `jobs` at a time; a pool broken by a worker's death is replaced and its tasks retried."""
        ctx = multiprocessing.get_context("spawn")
        pending = collections.deque(tasks)
        deaths: collections.Counter = collections.Counter()
        while pending:
            counter = ctx.Value("i", 0) if self.devices else None
            pool = concurrent.futures.ProcessPoolExecutor(
                self.jobs, mp_context=ctx, initializer=_pool_init,
                initargs=(self.spec, self.devices, counter, os.getpid()))
            inflight: dict = {}
            try:
                while pending or inflight:
                    while pending and len(inflight) < self.jobs:
                        task = pending[0]
                        # submit first: a pool that broke meanwhile refuses it, and the task
                        # must stay pending (it was lost, left "running", when popped first)
                        fut = pool.submit(work, task)
                        pending.popleft()
                        started(task)
                        inflight[fut] = task
                    done, _ = concurrent.futures.wait(inflight, return_when=concurrent.futures.FIRST_COMPLETED)
                    for fut in done:
                        task = inflight.pop(fut)
                        try:
                            result = fut.result()
                        except BrokenProcessPool:
                            inflight[fut] = task
                            raise
                        finished(task, result)
            except BrokenProcessPool:
                # A worker process died (killed, out of memory, a crash in a decoder): the
                # pool is gone. Results that arrived are kept; the rest is tried again.
                results = _after_a_death(inflight, pending, deaths)
                pool.shutdown(wait=True, cancel_futures=True)
                pool = counter = None
                gc.collect()  # the broken pool's queues: their semaphores are released, not reported leaked
                for task, result in results:
                    finished(task, result)
                continue
            except BaseException:
                # Ctrl-C, SIGTERM, or the driver failing: keep what finished, stop the workers
                # (SIGTERM: each removes its temporary output) and do not wait for the rest.
                for fut, task in inflight.items():
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        with contextlib.suppress(BaseException):
                            finished(task, fut.result())
                _stop_workers(pool)
                # The exception's traceback keeps this frame: drop the pool now, so its queues'
                # semaphores are released rather than reported leaked at exit.
                pool = counter = None
                gc.collect()
                raise
            pool.shutdown(wait=True)


def _after_a_death(inflight: dict, pending: collections.deque, deaths: collections.Counter) -> list:
    """(task, result) for the calls that finished before the pool broke, and for the tasks whose worker
    died too often; the others go back to the front of `pending`."""
    results = []
    for fut, task in inflight.items():
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            results.append((task, fut.result()))
            continue
        deaths[task] += 1
        if deaths[task] > WORKER_DEATHS:
            results.append((task, {"ok": False, "error": f"the worker process died {deaths[task]} "
                                   "times while colorizing it (killed, out of memory or a crash)"}))
        else:
            pending.appendleft(task)
    return results


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """SIGTERM to every worker (each removes its temporary output), SIGKILL to those still there after 10 s."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + 10
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1)
    with contextlib.suppress(Exception):
        pool.shutdown(wait=True, cancel_futures=True)


class RayWorker:
    """A Ray actor: one loaded model for its whole life (and one GPU, on GPU clusters)."""

    def __init__(self, spec: WorkerSpec):
        _load(spec)

    def colorize(self, task: Task) -> dict:
        return work(task)


class RayPool:
    """Ray actors holding one model each: Ray places them (one per GPU, or --jobs on CPU), restarts
    one whose process dies (max_restarts) and runs its call again (max_task_retries)."""

    def __init__(self, spec: WorkerSpec, jobs: int | None, address: str):
        import ray

        self.ray = ray
        self.own = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            try:
                if address == "local":
                    ray.init(**kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InvalidInput(f"--ray {address}: cannot connect to a Ray cluster ({one_line(exc)}); "
                                   "start one with `ray start --head`, give its address, "
                                   "or use --ray local") from None
            self.own = True
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        if gpus and spec.device in ("auto", "cuda") or spec.device.startswith("cuda"):
            if not gpus:
                self.close()
                raise InvalidInput(f"--device {spec.device}: the Ray cluster has no GPU; use --device cpu")
            self.slots = jobs or gpus
            resources = dict(num_gpus=1, num_cpus=1)
            self.spec = dataclasses.replace(spec, device="cuda")  # Ray sets CUDA_VISIBLE_DEVICES to its GPU
            self.name = f"{self.slots} Ray worker{'s' if self.slots > 1 else ''} (one GPU each)"
        else:
            self.slots = jobs or 1
            per = max(1, cpus // self.slots)
            largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=per)
            per = max(1, min(per, largest))
            resources = dict(num_cpus=per)
            self.spec = dataclasses.replace(spec, device="cpu", threads=per)
            self.name = f"{self.slots} Ray worker{'s' if self.slots > 1 else ''} ({per} CPU each)"
        # Application errors come back as values; the retries cover a worker process that dies
        # (killed, out of memory, its node lost): Ray restarts the actor, reloads its model
        # and runs the interrupted call again.
        self.actor_class = ray.remote(max_restarts=-1, max_task_retries=WORKER_DEATHS, **resources)(RayWorker)
        self.actors: list = []

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
        if self.own:
            self.ray.shutdown()
            self.own = False

    def run(self, tasks, started, finished) -> None:
        ray = self.ray
        pending = collections.deque(tasks)
        try:
            self.actors = [self.actor_class.remote(self.spec) for _ in range(min(self.slots, len(pending)))]
            idle = list(self.actors)
            inflight: dict = {}  # call -> (task, actor)
            while pending or inflight:
                while pending and idle:
                    task, actor = pending.popleft(), idle.pop()
                    started(task)
                    inflight[actor.colorize.remote(task)] = (task, actor)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                for ref in ready:
                    task, actor = inflight.pop(ref)
                    idle.append(actor)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = one_line(exc)[:300]
                        result = {"ok": False, "error": f"the Ray worker failed {WORKER_DEATHS + 1} times: {reason}"}
                    finished(task, result)
        finally:
            self.close()  # on Ctrl-C too: the actors stop, the driver removes their temporary outputs
