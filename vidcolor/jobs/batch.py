"""Whole archives as one resumable job: `vidcolor batch INPUTS... -o OUTDIR`.

The driver (this process) finds the inputs, keeps the job manifest and hands
one file (or one segment of a long film, `--segments N`) at a time to each
worker; workers hold one loaded model each and run the ordinary engine, which
writes every output under a temporary name and renames it when it is complete.

Workers are a local process pool (`--jobs N`, 'spawn' processes, the model
loaded once per process by the pool's initializer) or, with `--ray`, Ray
actors on a Ray cluster, one loaded model each: Ray places them (one per GPU,
or `--jobs` on CPU), detects an actor whose process dies, restarts it
(`max_restarts`) and runs the interrupted call again (`max_task_retries`).
Inputs are read and outputs written by path: on a cluster the archive and
OUTDIR must be on storage every node (and the driver) sees at the same path.

The manifest, OUTDIR/vidcolor-batch.sqlite, is written only by the driver and
only in SQLite transactions, so it is consistent whenever the driver stops,
SIGKILL included. Each input is pending, running, done (with the output's
size, sha256 and frame count) or failed (with the one-line error). Running the
same command again resumes: done files whose output still matches its
checksum are skipped, everything else is colorized again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import gc
import glob
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import pathlib
import shutil
import signal
import sqlite3
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from vidcolor.atomic import partials_of
from vidcolor.io.engine import EncodeOptions
from vidcolor.io.stages import OneStop
from vidcolor.errors import InvalidInput, Interrupted, OutputError, VidcolorError, WeightsError

MANIFEST = "vidcolor-batch.sqlite"
LOCK = ".vidcolor-batch.lock"
SEGMENTS_DIR = ".vidcolor-segments"
VIDEO_EXTS = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts", ".mts", ".mxf",
    ".wmv", ".flv", ".ogv", ".dv", ".vob", ".3gp", ".nut", ".y4m",
})
#: how often a file is tried again after its worker process died under it (per run).
WORKER_DEATHS = 2
STATES = ("pending", "running", "done", "failed")


# --------------------------------------------------------------------------
# configuration and inputs
# --------------------------------------------------------------------------


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


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    inputs: tuple[str, ...]
    outdir: pathlib.Path
    model: str = "default"
    weights: str | None = None
    device: str = "auto"
    dtype: str | None = None
    batch: int = 8
    saturation: float = 1.0
    stabilize: bool = False
    opts: EncodeOptions = EncodeOptions()
    #: output container extension (".mkv"); None keeps each input's.
    ext: str | None = None
    #: workers; None: one per GPU with CUDA, else 1.
    jobs: int | None = None
    #: None: local process pool; "auto", "local" or a cluster address: Ray.
    ray: str | None = None
    #: cut each film into up to this many segments at keyframes, colorized in parallel.
    segments: int = 1
    #: replace outputs that are not from this batch, and redo a batch made with other settings.
    overwrite: bool = False
    #: a line per finished file on stderr.
    progress: bool = True
    #: a damaged input (frames lost in the middle) fails instead of being done with a warning.
    strict: bool = False

    def settings(self) -> dict:
        """What decides the outputs' content: a resumed batch must use the same."""
        o = self.opts
        weights = str(pathlib.Path(self.weights).expanduser().resolve()) if self.weights else None
        return {"model": self.model, "weights": weights, "dtype": self.dtype, "saturation": self.saturation,
                "stabilize": self.stabilize, "codec": o.codec, "crf": o.crf,
                "preset": o.preset, "pix_fmt": o.pix_fmt, "start": o.start, "duration": o.duration, "ext": self.ext}


@dataclasses.dataclass(frozen=True)
class Item:
    key: str  # the input's absolute path: the manifest's key
    src: pathlib.Path
    dst: pathlib.Path


def _is_hidden(rel: pathlib.Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def collect_inputs(specs, outdir: pathlib.Path, ext: str | None = None) -> list[Item]:
    """Files, folders (searched recursively for videos) and glob patterns, in order, without repeats.

    A file named on the command line goes to OUTDIR/NAME; a folder's videos keep
    their paths below the folder. Two inputs that would share an output are an error.
    Nothing inside OUTDIR (compared by resolved path: `..` and symlinks count) is ever
    an input: folders and patterns skip it, a file named there is refused, and no input
    may be any item's output, whatever the flags (--overwrite would destroy it).
    """
    outdir = pathlib.Path(outdir).absolute()
    real_out = outdir.resolve()
    found: list[tuple[pathlib.Path, pathlib.Path]] = []  # (source, path below OUTDIR)
    skipped_outdir: list[pathlib.Path] = []

    def inside_outdir(f: pathlib.Path) -> bool:
        return f.resolve().is_relative_to(real_out)

    def add_folder(folder: pathlib.Path) -> None:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if _is_hidden(rel) or f.suffix.lower() not in VIDEO_EXTS or not f.is_file():
                continue
            if inside_outdir(f):  # never our own outputs
                skipped_outdir.append(f)
                continue
            found.append((f, rel))

    for spec in specs:
        path = pathlib.Path(spec).expanduser()
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            found.append((path, pathlib.Path(path.name)))
        elif glob.has_magic(str(spec)):
            matches = sorted(glob.glob(os.path.expanduser(str(spec)), recursive=True))
            if not matches:
                raise InvalidInput(f"{spec}: the pattern matches no file; check it (quote it so the shell leaves it)")
            for m in map(pathlib.Path, matches):
                if m.is_dir():
                    add_folder(m)
                elif m.is_file() and not inside_outdir(m):
                    found.append((m, pathlib.Path(m.name)))
                elif m.is_file() and m.suffix.lower() in VIDEO_EXTS:
                    skipped_outdir.append(m)
        else:
            raise InvalidInput(f"{spec}: no such file or folder; check the path")
    items: list[Item] = []
    seen: set[str] = set()
    outputs: dict[pathlib.Path, pathlib.Path] = {}
    for src, rel in found:
        key = str(src.resolve())
        if key in seen:
            continue
        seen.add(key)
        dst = outdir / rel
        if ext:
            dst = dst.with_suffix(ext)
        if dst.exists() and os.path.samefile(dst, src) or dst.resolve() == src.resolve():
            raise OutputError(f"{dst}: the output would be the input {src}; choose another folder with -o")
        if inside_outdir(src):  # only files named one by one get here: the batch writes there
            raise OutputError(f"{src}: this input lies inside the output folder {outdir}, where the batch "
                              "writes (it could be overwritten); move it out or choose another -o")
        if dst in outputs:
            raise InvalidInput(f"{outputs[dst]} and {src} would both be written to {dst}; "
                               "rename one or colorize them into separate folders")
        outputs[dst] = src
        items.append(Item(key, src.absolute(), dst))
    # An input reached under another name (a hard link, a symlinked folder) as another item's output.
    inodes = {(st.st_dev, st.st_ino): item.src for item in items for st in [item.src.stat()]}
    for item in items:
        st = item.dst.stat() if item.dst.exists() else None
        if st is not None and (st.st_dev, st.st_ino) in inodes:
            raise OutputError(f"{item.dst}: the output would be the input {inodes[st.st_dev, st.st_ino]}; "
                              "choose another folder with -o")
    if not items and skipped_outdir:
        raise InvalidInput(f"the videos in {' '.join(map(str, specs))} lie inside the output folder {outdir}, "
                           "which the batch never reads (its own outputs go there); choose an -o outside them")
    if not items:
        raise InvalidInput(f"no video files in {' '.join(map(str, specs))} "
                           f"(folders are searched for {', '.join(sorted(VIDEO_EXTS))})")
    return items


# --------------------------------------------------------------------------
# the manifest
# --------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    input TEXT PRIMARY KEY,
    output TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    frames INTEGER, sha256 TEXT, size INTEGER, seconds REAL,
    error TEXT,
    warning TEXT,                         -- damage in a done input: frames lost in the middle
    source TEXT,                          -- the input's size and mtime when it was colorized
    segments INTEGER NOT NULL DEFAULT 1,  -- segments asked for when this file was planned
    runs INTEGER NOT NULL DEFAULT 0,      -- times it was handed to a worker
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    input TEXT NOT NULL REFERENCES files (input),
    idx INTEGER NOT NULL,
    start REAL, end REAL,                 -- the engine's window (seconds); NULL: the film's start / end
    expected INTEGER NOT NULL,            -- frames in the window by the packets' timestamps
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    frames INTEGER, sha256 TEXT, size INTEGER, seconds REAL, error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (input, idx)
);
"""


class Manifest:
    """OUTDIR/vidcolor-batch.sqlite; every change is one committed transaction."""

    #: seconds to wait for another process's lock on the manifest
    LOCK_WAIT = 30.0

    def __init__(self, path: pathlib.Path):
        self.path = path
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, timeout=self.LOCK_WAIT)
            self.db.row_factory = sqlite3.Row
            self.db.executescript(_SCHEMA)
            if "warning" not in {r[1] for r in self.db.execute("PRAGMA table_info(files)")}:  # older manifests
                self.db.execute("ALTER TABLE files ADD COLUMN warning TEXT")
            # A damaged page is found now, not as a traceback from a later query.
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError("damaged: " + " ".join(check.split()))
            self.settings()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):  # OperationalError: another process holds it
                raise OutputError(f"{path}: the batch manifest is in use by another process ({exc}); wait for "
                                  "it to finish, or choose another -o") from None
            raise OutputError(f"{path}: the batch manifest cannot be read ({exc}); remove it to start the batch "
                              "afresh (finished outputs are then redone), or choose another -o") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def tx(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                # SQLite has already rolled back after some errors (disk full): rolling back again
                # would replace the real reason with "cannot rollback - no transaction is active".
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise OutputError(f"{self.path}: the batch manifest cannot be written ({exc}); "
                              "what is marked done in it is kept") from None

    def settings(self) -> dict | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            return None
        try:
            settings = json.loads(row[0])
        except (ValueError, TypeError):
            settings = None
        if not isinstance(settings, dict):
            raise sqlite3.DatabaseError("its settings are not a JSON object")
        return settings

    def set_settings(self, settings: dict) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))

    def file(self, key: str):
        return self.db.execute("SELECT * FROM files WHERE input = ?", (key,)).fetchone()

    def files(self) -> list:
        return self.db.execute("SELECT * FROM files ORDER BY input").fetchall()

    def segments(self, key: str) -> list:
        return self.db.execute("SELECT * FROM segments WHERE input = ? ORDER BY idx", (key,)).fetchall()

    def add(self, item: Item) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO files (input, output, state, updated) VALUES (?, ?, 'pending', ?)",
                       (item.key, str(item.dst), time.time()))

    def set_file(self, key: str, state: str, **fields) -> None:
        assert state in STATES
        cols = {"state": state, "updated": time.time(), **fields}
        with self.tx() as db:
            db.execute(f"UPDATE files SET {', '.join(f'{c} = ?' for c in cols)} WHERE input = ?",
                       (*cols.values(), key))

    def started(self, key: str, segment: int | None, source: str | None) -> None:
        with self.tx() as db:
            if segment is not None:
                db.execute("UPDATE segments SET state = 'running', updated = ? WHERE input = ? AND idx = ?",
                           (time.time(), key, segment))
            # A file's segments count as one run of it, and do not revive a file already failed.
            db.execute("UPDATE files SET state = 'running', runs = runs + 1, source = ?, updated = ? "
                       "WHERE input = ? AND (? OR state = 'pending')", (source, time.time(), key, segment is None))

    def set_segment(self, key: str, idx: int, state: str, **fields) -> None:
        assert state in STATES
        cols = {"state": state, "updated": time.time(), **fields}
        with self.tx() as db:
            db.execute(f"UPDATE segments SET {', '.join(f'{c} = ?' for c in cols)} WHERE input = ? AND idx = ?",
                       (*cols.values(), key, idx))

    def plan(self, key: str, requested: int, segs: list, paths: list[pathlib.Path]) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM segments WHERE input = ?", (key,))
            db.executemany(
                "INSERT INTO segments (input, idx, start, end, expected, path, state, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(key, s.index, s.start, s.end, s.frames, str(p), time.time()) for s, p in zip(segs, paths)])
            db.execute("UPDATE files SET segments = ?, updated = ? WHERE input = ?", (requested, time.time(), key))

    def forget_segments(self, key: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM segments WHERE input = ?", (key,))

    def interrupted(self) -> None:
        """Whatever was running goes back to pending (its temporary output was removed)."""
        with self.tx() as db:
            db.execute("UPDATE files SET state = 'pending', updated = ? WHERE state = 'running'", (time.time(),))
            db.execute("UPDATE segments SET state = 'pending', updated = ? WHERE state = 'running'", (time.time(),))


def sha256_file(path, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _still_valid(path, sha256: str | None, size: int | None) -> bool:
    """The finished output is still there, whole and unchanged."""
    try:
        if sha256 is None or os.path.getsize(path) != size:
            return False
        return sha256_file(path)[0] == sha256
    except OSError:
        return False


def _source_stamp(path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _remove_partials(dst: pathlib.Path) -> None:
    """The engine's temporary outputs for ``dst`` (`engine.partial_path`) left by killed workers."""
    for p, _ in partials_of(dst):
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------


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


_WORKER: dict = {"spec": None, "colorizer": None, "error": None, "busy": False}


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, VidcolorError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def _load(spec: WorkerSpec) -> None:
    if _WORKER["spec"] == spec and (_WORKER["colorizer"] is not None or _WORKER["error"]):
        return
    from vidcolor.colorizer import Colorizer
    from vidcolor.runtime import Runtime

    _WORKER.update(spec=spec, colorizer=None, error=None)
    try:
        runtime = Runtime(device=spec.device, dtype=spec.dtype, batch=spec.batch, threads=spec.threads)
        colorizer = Colorizer(spec.model, spec.weights, runtime, saturation=spec.saturation)
        # The engine resets the stabilizer at the start of every file (and segment).
        _WORKER["colorizer"] = colorizer.stabilized() if spec.stabilize else colorizer
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the batch
        _WORKER["error"] = _one_line(exc)


def work(task: Task) -> dict:
    """Colorize one file or segment with this process's model; errors come back as values."""
    from vidcolor.io.engine import VideoJob

    if _WORKER["error"]:
        return {"ok": False, "fatal": True, "error": f"loading the model failed: {_WORKER['error']}"}
    _WORKER["busy"] = True
    try:
        job = VideoJob(task.src, task.dst, _WORKER["colorizer"], task.opts, progress=task.progress)
        job.announce = False  # the model's line once per batch would do; not once per file
        stats = job.run()
        digest, size = sha256_file(task.dst)
    except Interrupted:
        # SIGTERM from the driver or the pool: the engine has removed its temporary
        # output while unwinding; the process ends (the pool would otherwise keep it).
        _quit(128 + signal.SIGTERM)
    except Exception as exc:  # noqa: BLE001 - one file's failure is reported, the batch goes on
        return {"ok": False, "error": _one_line(exc)}
    finally:
        _WORKER["busy"] = False
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
    if _WORKER["busy"]:
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


# --------------------------------------------------------------------------
# executors: a local process pool, or Ray
# --------------------------------------------------------------------------


class _Stop(Exception):
    """A worker could not load the model: no file can be done."""


class LocalPool:
    """`--jobs N` spawned processes, each with one model."""

    def __init__(self, spec: WorkerSpec, jobs: int, devices: list[str]):
        self.spec, self.jobs, self.devices = spec, jobs, devices
        self.name = f"{jobs} local worker{'s' if jobs > 1 else ''}"

    def run(self, tasks, started, finished) -> None:
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
                # The exception's traceback keeps this frame: drop the pool now, so its queues'
                # semaphores are released rather than reported leaked at exit.
                pool = procs = counter = None
                gc.collect()
                raise
            pool.shutdown(wait=True)


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
                raise InvalidInput(f"--ray {address}: cannot connect to a Ray cluster ({_one_line(exc)}); "
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
                        reason = _one_line(exc)[:300]
                        result = {"ok": False, "error": f"the Ray worker failed {WORKER_DEATHS + 1} times: {reason}"}
                    finished(task, result)
        finally:
            self.close()  # on Ctrl-C too: the actors stop, the driver removes their temporary outputs


# --------------------------------------------------------------------------
# the batch
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    outdir: pathlib.Path
    files: int = 0
    done: int = 0
    skipped: int = 0  # done before this run
    failed: list = dataclasses.field(default_factory=list)  # (input, reason)
    damaged: list = dataclasses.field(default_factory=list)  # (input, what was lost): done, with a warning
    frames: int = 0  # colorized in this run
    seconds: float = 0.0
    workers: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        head = (f"vidcolor: batch into {self.outdir}: {self.done} of {self.files} files done"
                + (f" ({self.skipped} already before)" if self.skipped else "")
                + f", {len(self.failed)} failed; {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps)")
        return ([head] + [f"vidcolor: warning: {src}: {what}" for src, what in self.damaged]
                + [f"vidcolor: failed: {src}: {reason}" for src, reason in self.failed])


def plural(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _say(cfg: BatchConfig, msg: str) -> None:
    if cfg.progress:
        print(f"vidcolor: {msg}", file=sys.stderr, flush=True)


def _default_jobs(device: str) -> tuple[int, list[str]]:
    """Local workers: one per GPU when the device is CUDA (each given its own), else 1."""
    if device == "cpu":
        return 1, []
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, [f"cuda:{i}" for i in range(n)]
    return 1, []


def _check_model(cfg: BatchConfig) -> None:
    """Model and weights errors once, before any worker starts."""
    from vidcolor.models import get_model
    from vidcolor.weights import weights_path

    spec = get_model(cfg.model)
    path = weights_path(spec, cfg.weights)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; check --weights")


def _prepare_outdir(outdir: pathlib.Path) -> None:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        probe = outdir / f".vidcolor-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise OutputError(f"{outdir}: cannot write the batch output folder here ({why}); "
                          "choose another folder with -o") from None


def _take_lock(path: pathlib.Path):
    """The batch folder's lock, held open. A run that ends removes the file while holding it, so a
    lock taken on a file that has just been removed is taken again on the new one."""
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise OutputError(f"{path.parent}: another `vidcolor batch` is writing into this folder; "
                              "wait for it or choose another -o") from None
        try:
            if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                return lock
        except FileNotFoundError:
            pass
        lock.close()


def run_batch(cfg: BatchConfig) -> Summary:
    """Colorize every input into cfg.outdir, resuming what an earlier run of the same batch began."""
    from vidcolor.io.segments import join_segments, plan_segments, segment_options

    t0 = time.perf_counter()
    outdir = pathlib.Path(cfg.outdir).absolute()
    if cfg.jobs is not None and cfg.jobs < 1:
        raise InvalidInput("--jobs must be at least 1")
    if cfg.segments < 1:
        raise InvalidInput("--segments must be at least 1")
    if cfg.ext and not cfg.ext.startswith("."):
        cfg = dataclasses.replace(cfg, ext="." + cfg.ext)
    items = collect_inputs(cfg.inputs, outdir, cfg.ext)
    _check_model(cfg)
    _prepare_outdir(outdir)
    lock = _take_lock(outdir / LOCK)
    # The first Ctrl-C or SIGTERM stops the batch; later ones are dropped so that the cleanup (workers
    # stopped, partials removed, the manifest's running files back to pending) always finishes.
    guard = OneStop().__enter__()
    try:
        manifest = Manifest(outdir / MANIFEST)
        try:
            return _run(cfg, items, outdir, manifest, t0, plan_segments, segment_options, join_segments)
        finally:
            manifest.close()
    finally:
        guard.stopping = True
        with contextlib.suppress(OSError):
            (outdir / LOCK).unlink()  # while still held: no stale lock file is left behind
        lock.close()
        guard.__exit__()


def _run(cfg, items, outdir, manifest, t0, plan_segments, segment_options, join_segments) -> Summary:
    from vidcolor.models import get_model
    from vidcolor.io.segments import warmup_seconds
    from vidcolor.temporal import warmup_frames

    summary = Summary(outdir, files=len(items))
    # State carried from frame to frame needs a warm-up overlap before each segment.
    stateful = cfg.stabilize or get_model(cfg.model).temporal
    settings = cfg.settings()
    previous = manifest.settings()
    if previous is not None and previous != settings:
        changed = ", ".join(f"{k} {previous.get(k)!r} -> {settings.get(k)!r}"
                            for k in settings if previous.get(k) != settings.get(k))
        if not cfg.overwrite:
            raise InvalidInput(f"{outdir} holds a batch made with other settings ({changed}); "
                               "use another -o, or pass --overwrite to redo its files with these")
        with manifest.tx() as db:
            db.execute("UPDATE files SET state = 'pending' WHERE state = 'done'")
            db.execute("UPDATE segments SET state = 'pending'")
    manifest.set_settings(settings)

    # Outputs that this batch did not make are never replaced silently.
    foreign = [item.dst for item in items
               if item.dst.exists() and not cfg.overwrite and manifest.file(item.key) is None]
    if foreign:
        raise OutputError(f"{foreign[0]}: already exists and was not made by this batch"
                          + (f" ({len(foreign)} such files)" if len(foreign) > 1 else "")
                          + "; pass --overwrite to replace them or choose another -o")
    # What is left to do: done files are skipped while their output matches its checksum
    # and the input is unchanged; running (a driver that was stopped), failed and pending are redone.
    todo: list[Item] = []
    for item in items:
        row = manifest.file(item.key)
        if row is None:
            manifest.add(item)
            todo.append(item)
        elif row["state"] == "done" and row["output"] == str(item.dst) \
                and row["source"] == _source_stamp(item.src) \
                and _still_valid(item.dst, row["sha256"], row["size"]):
            summary.done += 1
            summary.skipped += 1
        else:
            if row["output"] != str(item.dst):
                with manifest.tx() as db:
                    db.execute("UPDATE files SET output = ? WHERE input = ?", (str(item.dst), item.key))
            manifest.set_file(item.key, "pending", error=None, warning=None)
            todo.append(item)
    for item in items:
        _remove_partials(item.dst)
    by_key = {item.key: item for item in items}

    # Split the long films (--segments): the plan is kept, so a resumed batch reuses its done segments.
    tasks: list[Task] = []
    seg_left: dict[str, set[int]] = {}
    seg_rows: dict[str, list] = {}
    for item in todo:
        try:
            item.dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{item.dst.parent}: cannot make this output folder ({exc.strerror or exc}); "
                              "choose another -o") from None
        row = manifest.file(item.key)
        rows = manifest.segments(item.key)
        if cfg.segments > 1 and (not rows or row["segments"] != cfg.segments):
            _drop_segments(manifest, item, rows)
            try:
                plan = plan_segments(item.src, cfg.segments, cfg.opts)
            except VidcolorError as exc:
                manifest.set_file(item.key, "failed", error=_one_line(exc))
                summary.failed.append((str(item.src), _one_line(exc)))
                continue
            if len(plan) > 1:
                folder = _segment_folder(outdir, item)
                manifest.plan(item.key, cfg.segments, plan,
                              [folder / f"{s.index:04d}{item.dst.suffix}" for s in plan])
            rows = manifest.segments(item.key)
        elif cfg.segments == 1 and rows:
            _drop_segments(manifest, item, rows)
            rows = []
        if not rows:
            tasks.append(Task(item.key, None, str(item.src), str(item.dst), cfg.opts))
            continue
        seg_rows[item.key] = rows
        left = set()
        warm = warmup_seconds(item.src, warmup_frames()) if stateful else 0.0
        for r in rows:
            path = pathlib.Path(r["path"])
            _remove_partials(path)
            if r["state"] == "done" and _still_valid(path, r["sha256"], r["size"]):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            seg = _segment_of(r)
            tasks.append(Task(item.key, r["idx"], str(item.src), str(path), segment_options(cfg.opts, seg, warm)))
            left.add(r["idx"])
        seg_left[item.key] = left
    ready_to_join = [k for k, left in seg_left.items() if not left]

    devices: list[str] = []
    jobs = cfg.jobs
    spec = WorkerSpec(cfg.model, cfg.weights, cfg.device, cfg.dtype, cfg.batch,
                      saturation=cfg.saturation, stabilize=cfg.stabilize)
    if cfg.ray:
        pool = RayPool(spec, jobs, cfg.ray) if tasks else None
    else:
        default, devices = _default_jobs(cfg.device)
        jobs = jobs or default
        cores = len(os.sched_getaffinity(0))
        if not devices:  # CPU: the cores shared out among the workers
            spec = dataclasses.replace(spec, threads=max(1, cores // jobs))
        pool = LocalPool(spec, jobs, devices) if tasks else None
    summary.workers = pool.name if pool else "none needed"
    if cfg.progress and jobs == 1 and not cfg.ray:  # a bar within each file, in the one worker
        tasks = [dataclasses.replace(t, progress=True) for t in tasks]
    _say(cfg, f"batch of {plural(len(items), 'file')} into {outdir}: {summary.skipped} already done, "
              f"{len(todo) - len(summary.failed)} to colorize"
              + (f" ({plural(len(tasks), 'task')}, {pool.name})" if pool else ""))

    finished_files = [summary.done]

    def file_done(key: str, frames: int, seconds: float) -> None:
        item = by_key[key]
        digest, size = sha256_file(item.dst)
        manifest.set_file(key, "done", frames=frames, seconds=seconds, sha256=digest, size=size, error=None)
        summary.done += 1
        finished_files[0] += 1
        _say(cfg, f"[{finished_files[0]}/{len(items)}] done {item.dst}: {frames} frames")

    def file_failed(key: str, reason: str) -> None:
        if manifest.file(key)["state"] == "failed":
            return
        reason = reason.replace(f"{by_key[key].src}: ", "", 1)  # the summary names the file already
        manifest.set_file(key, "failed", error=reason)
        summary.failed.append((str(by_key[key].src), reason))
        finished_files[0] += 1
        _say(cfg, f"[{finished_files[0]}/{len(items)}] failed {by_key[key].src}: {reason}")

    def join(key: str) -> None:
        item = by_key[key]
        rows = manifest.segments(key)
        try:
            frames = join_segments(item.src, [r["path"] for r in rows], item.dst, cfg.opts)
        except VidcolorError as exc:
            file_failed(key, f"joining the segments failed: {_one_line(exc)}")
            return
        made = sum(r["frames"] for r in rows)
        if frames != made:
            file_failed(key, f"the joined output has {frames} frames, its segments {made}")
            return
        file_done(key, frames, sum(r["seconds"] or 0 for r in rows))
        _drop_segments(manifest, item, rows)

    def started(task: Task) -> None:
        manifest.started(task.key, task.segment, _source_stamp(task.src))

    def finished(task: Task, result: dict) -> None:
        if result.get("fatal"):
            raise _Stop(result["error"])
        damage = result.get("damage") if result["ok"] else None
        if damage:
            damage = damage.replace(f"{task.src}: ", "", 1)
            if cfg.strict:
                result = {"ok": False, "error": f"{damage} (--strict)"}
        if task.segment is None:
            if result["ok"]:
                manifest.set_file(task.key, "done", frames=result["frames"], seconds=result["seconds"],
                                  sha256=result["sha256"], size=result["size"], error=None, warning=damage)
                if damage:
                    summary.damaged.append((task.src, damage))
                summary.done += 1
                summary.frames += result["frames"]
                finished_files[0] += 1
                _say(cfg, f"[{finished_files[0]}/{len(items)}] done {task.dst}: {result['frames']} frames "
                          f"in {result['seconds']:.1f} s" + (f"; warning: {damage}" if damage else ""))
            else:
                file_failed(task.key, result["error"])
            return
        if result["ok"]:
            if damage:
                manifest.set_file(task.key, manifest.file(task.key)["state"], warning=damage)
                summary.damaged.append((task.src, f"segment {task.segment + 1}: {damage}"))
            manifest.set_segment(task.key, task.segment, "done", frames=result["frames"],
                                 seconds=result["seconds"], sha256=result["sha256"], size=result["size"], error=None)
            summary.frames += result["frames"]
            seg_left[task.key].discard(task.segment)
            if not seg_left[task.key] and manifest.file(task.key)["state"] != "failed":
                join(task.key)
        else:
            manifest.set_segment(task.key, task.segment, "failed", error=result["error"])
            seg_left[task.key].discard(task.segment)
            error = result["error"].replace(f"{task.src}: ", "", 1)
            file_failed(task.key, f"segment {task.segment + 1} of {len(seg_rows[task.key])}: {error}")

    try:
        for key in ready_to_join:
            join(key)
        if pool is not None:
            pool.run(tasks, started, finished)
    except _Stop as exc:
        manifest.interrupted()
        raise InvalidInput(str(exc)) from None
    except BaseException:
        with contextlib.suppress(OutputError):
            manifest.interrupted()
        raise
    finally:
        for item in items:
            _remove_partials(item.dst)
        for task in tasks:
            _remove_partials(pathlib.Path(task.dst))
        summary.seconds = time.perf_counter() - t0
    return summary


def _segment_folder(outdir: pathlib.Path, item: Item) -> pathlib.Path:
    tag = hashlib.sha1(item.key.encode()).hexdigest()[:10]
    return outdir / SEGMENTS_DIR / f"{item.dst.stem}-{tag}"


def _segment_of(row):
    from vidcolor.io.segments import Segment

    return Segment(row["idx"], row["start"], row["end"], row["expected"])


def _drop_segments(manifest: Manifest, item: Item, rows) -> None:
    for r in rows:
        pathlib.Path(r["path"]).unlink(missing_ok=True)
        _remove_partials(pathlib.Path(r["path"]))
    if rows:
        folder = pathlib.Path(rows[0]["path"]).parent
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # .vidcolor-segments, once empty
        manifest.forget_segments(item.key)
