"""Whole archives as one resumable job: `vidcolor batch INPUTS... -o OUTDIR`.

The driver (this process) finds the inputs (`plan`), keeps the job manifest (`manifest`) and hands
one file (or one segment of a long film, `--segments N`) at a time to each worker (`pools`); workers
hold one loaded model each and run the ordinary engine, which writes every output under a temporary
name and renames it when it is complete. Running the same command again resumes: done files whose
output still matches its checksum are skipped, everything else is colorized again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import sys
import time

from vidcolor.errors import InvalidInput, OutputError, VidcolorError, WeightsError, one_line
from vidcolor.io.engine import EncodeOptions
from vidcolor.io.stages import OneStop
from vidcolor.jobs.manifest import LOCK, MANIFEST, Manifest, source_stamp, still_valid, take_lock
from vidcolor.jobs.plan import Item, collect_inputs, remove_partials, segment_folder
from vidcolor.jobs.pools import LocalPool, RayPool, Task, WorkerSpec
from vidcolor.atomic import sha256_file


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """A batch as the command line gives it; checks its own values."""

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
    #: output container extension (".mkv", or "mkv"); None keeps each input's.
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
    #: a folder of colour references named after the films (film.png, film.2.jpg): `--references`.
    references: pathlib.Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outdir", pathlib.Path(self.outdir))
        if not self.inputs:
            raise InvalidInput("no inputs: name video files, folders or glob patterns")
        if self.jobs is not None and self.jobs < 1:
            raise InvalidInput("--jobs must be at least 1")
        if self.segments < 1:
            raise InvalidInput("--segments must be at least 1")
        if self.references is not None:
            if not pathlib.Path(self.references).is_dir():
                raise InvalidInput(f"--references {self.references}: not a folder; give a folder of colour pictures "
                                   "named after the films (film.png, film.2.jpg)")
            if self.segments > 1:
                raise InvalidInput("--references colours each film whole (a reference's colour runs through its "
                                   "shot); leave out --segments")
        if self.batch < 1:
            raise InvalidInput(f"--batch {self.batch}: give at least 1 frame per model call")
        if self.ext and not self.ext.startswith("."):
            object.__setattr__(self, "ext", "." + self.ext)

    def settings(self) -> dict:
        """What decides the outputs' content: a resumed batch must use the same."""
        o = self.opts
        weights = str(pathlib.Path(self.weights).expanduser().resolve()) if self.weights else None
        return {"model": self.model, "weights": weights, "dtype": self.dtype, "saturation": self.saturation,
                "stabilize": self.stabilize, "codec": o.codec, "crf": o.crf,
                "preset": o.preset, "pix_fmt": o.pix_fmt, "start": o.start, "duration": o.duration, "ext": self.ext,
                # only when given: batches made before references existed resume with the same settings
                **({"references": str(pathlib.Path(self.references).resolve())} if self.references else {})}


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


def run_batch(cfg: BatchConfig) -> Summary:
    """Colorize every input into cfg.outdir, resuming what an earlier run of the same batch began."""
    t0 = time.perf_counter()
    outdir = pathlib.Path(cfg.outdir).absolute()
    items = collect_inputs(cfg.inputs, outdir, cfg.ext)
    _check_model(cfg)
    _prepare_outdir(outdir)
    lock = take_lock(outdir / LOCK)
    # The first Ctrl-C or SIGTERM stops the batch; later ones are dropped so that the cleanup (workers
    # stopped, partials removed, the manifest's running files back to pending) always finishes.
    guard = OneStop().__enter__()
    try:
        manifest = Manifest(outdir / MANIFEST)
        try:
            return _BatchRun(cfg, items, outdir, manifest, t0).run()
        finally:
            manifest.close()
    finally:
        guard.stopping = True
        with contextlib.suppress(OSError):
            (outdir / LOCK).unlink()  # while still held: no stale lock file is left behind
        lock.close()
        guard.__exit__()


class _Stop(Exception):
    """A worker could not load the model: no file can be done."""


class _BatchRun:
    """One run of a batch: what is left to do, handed to the workers, each result recorded as it comes."""

    def __init__(self, cfg: BatchConfig, items: list[Item], outdir: pathlib.Path, manifest: Manifest, t0: float):
        self.cfg, self.items, self.outdir, self.manifest, self.t0 = cfg, items, outdir, manifest, t0
        self.summary = Summary(outdir, files=len(items))
        self.by_key: dict[str, Item] = {item.key: item for item in items}
        #: files done or failed so far, those of earlier runs included: the [n/N] of each progress line
        self.finished_files: int = 0
        self.tasks: list[Task] = []
        #: a segmented film's segments still to colorize; its rows in the manifest
        self.seg_left: dict[str, set[int]] = {}
        self.seg_rows: dict[str, list] = {}

    def run(self) -> Summary:
        self.check_settings()
        todo = self.left_to_do()
        for item in self.items:
            remove_partials(item.dst)
        ready_to_join = self.plan_tasks(todo)
        pool = self.make_pool(todo)
        self.finished_files = self.summary.done
        try:
            for key in ready_to_join:
                self.join(key)
            if pool is not None:
                pool.run(self.tasks, self.started, self.finished)
        except _Stop as exc:
            self.manifest.interrupted()
            raise InvalidInput(str(exc)) from None
        except BaseException:
            with contextlib.suppress(OutputError):
                self.manifest.interrupted()
            raise
        finally:
            for item in self.items:
                remove_partials(item.dst)
            for task in self.tasks:
                remove_partials(pathlib.Path(task.dst))
            self.summary.seconds = time.perf_counter() - self.t0
        return self.summary

    def check_settings(self) -> None:
        """A batch resumed with other settings is refused (redone with --overwrite); foreign outputs too."""
        cfg, manifest = self.cfg, self.manifest
        settings = cfg.settings()
        previous = manifest.settings()
        if previous is not None and previous != settings:
            changed = ", ".join(f"{k} {previous.get(k)!r} -> {settings.get(k)!r}"
                                for k in settings if previous.get(k) != settings.get(k))
            if not cfg.overwrite:
                raise InvalidInput(f"{self.outdir} holds a batch made with other settings ({changed}); "
                                   "use another -o, or pass --overwrite to redo its files with these")
            with manifest.tx() as db:
                db.execute("UPDATE files SET state = 'pending' WHERE state = 'done'")
                db.execute("UPDATE segments SET state = 'pending'")
        manifest.set_settings(settings)
        # Outputs that this batch did not make are never replaced silently.
        foreign = [item.dst for item in self.items
                   if item.dst.exists() and not cfg.overwrite and manifest.file(item.key) is None]
        if foreign:
            raise OutputError(f"{foreign[0]}: already exists and was not made by this batch"
                              + (f" ({len(foreign)} such files)" if len(foreign) > 1 else "")
                              + "; pass --overwrite to replace them or choose another -o")

    def left_to_do(self) -> list[Item]:
        """Done files are skipped while their output matches its checksum and the input is unchanged;
        running (a driver that was stopped), failed and pending are redone."""
        manifest, todo = self.manifest, []
        for item in self.items:
            row = manifest.file(item.key)
            if row is None:
                manifest.add(item)
                todo.append(item)
            elif row["state"] == "done" and row["output"] == str(item.dst) \
                    and row["source"] == source_stamp(item.src) \
                    and still_valid(item.dst, row["sha256"], row["size"]):
                self.summary.done += 1
                self.summary.skipped += 1
            else:
                if row["output"] != str(item.dst):
                    with manifest.tx() as db:
                        db.execute("UPDATE files SET output = ? WHERE input = ?", (str(item.dst), item.key))
                manifest.set_file(item.key, "pending", error=None, warning=None)
                todo.append(item)
        return todo

    def plan_tasks(self, todo: list[Item]) -> list[str]:
        """A task per file, or per segment left of a long film (--segments): the plan is kept, so a
        resumed batch reuses its done segments. Returns the films whose segments are all done."""
        from vidcolor.io.segments import warmup_seconds
        from vidcolor.models import get_model
        from vidcolor.temporal import warmup_frames

        cfg = self.cfg
        # State carried from frame to frame needs a warm-up overlap before each segment.
        stateful = cfg.stabilize or get_model(cfg.model).temporal
        for item in todo:
            try:
                item.dst.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{item.dst.parent}: cannot make this output folder ({exc.strerror or exc}); "
                                  "choose another -o") from None
            rows = self.segment_rows(item)
            if rows is None:
                continue
            if not rows:
                self.tasks.append(Task(item.key, None, str(item.src), str(item.dst), cfg.opts))
                continue
            self.seg_rows[item.key] = rows
            self.seg_left[item.key] = self.segment_tasks(
                item, rows, warmup_seconds(item.src, warmup_frames()) if stateful else 0.0)
        return [k for k, left in self.seg_left.items() if not left]

    def segment_rows(self, item: Item) -> list | None:
        """The film's segments in the manifest, planned now if --segments changed; [] for a whole file,
        None when planning failed (the file is failed)."""
        from vidcolor.io.segments import plan_segments

        cfg, manifest = self.cfg, self.manifest
        row = manifest.file(item.key)
        rows = manifest.segments(item.key)
        if cfg.segments > 1 and (not rows or row["segments"] != cfg.segments):
            _drop_segments(manifest, item, rows)
            try:
                plan = plan_segments(item.src, cfg.segments, cfg.opts)
            except VidcolorError as exc:
                manifest.set_file(item.key, "failed", error=one_line(exc))
                self.summary.failed.append((str(item.src), one_line(exc)))
                return None
            if len(plan) > 1:
                folder = segment_folder(self.outdir, item)
                manifest.plan(item.key, cfg.segments, plan,
                              [folder / f"{s.index:04d}{item.dst.suffix}" for s in plan])
            rows = manifest.segments(item.key)
        elif cfg.segments == 1 and rows:
            _drop_segments(manifest, item, rows)
            rows = []
        return rows

    def segment_tasks(self, item: Item, rows: list, warm: float) -> set[int]:
        """Tasks for the segments not done (or whose output changed since); their indices."""
        from vidcolor.io.segments import segment_options

        left = set()
        for r in rows:
            path = pathlib.Path(r["path"])
            remove_partials(path)
            if r["state"] == "done" and still_valid(path, r["sha256"], r["size"]):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            seg = _segment_of(r)
            self.tasks.append(Task(item.key, r["idx"], str(item.src), str(path),
                                   segment_options(self.cfg.opts, seg, warm)))
            left.add(r["idx"])
        return left

    def make_pool(self, todo: list[Item]) -> LocalPool | RayPool | None:
        """The workers (none when every task is done already), and the batch's first line."""
        cfg = self.cfg
        devices: list[str] = []
        jobs = cfg.jobs
        spec = WorkerSpec(cfg.model, cfg.weights, cfg.device, cfg.dtype, cfg.batch,
                          saturation=cfg.saturation, stabilize=cfg.stabilize,
                          references=str(cfg.references) if cfg.references else None)
        if cfg.ray:
            pool = RayPool(spec, jobs, cfg.ray) if self.tasks else None
        else:
            default, devices = _default_jobs(cfg.device)
            jobs = jobs or default
            cores = len(os.sched_getaffinity(0))
            if not devices:  # CPU: the cores shared out among the workers
                spec = dataclasses.replace(spec, threads=max(1, cores // jobs))
            pool = LocalPool(spec, jobs, devices) if self.tasks else None
        self.summary.workers = pool.name if pool else "none needed"
        if cfg.progress and jobs == 1 and not cfg.ray:  # a bar within each file, in the one worker
            self.tasks = [dataclasses.replace(t, progress=True) for t in self.tasks]
        _say(cfg, f"batch of {plural(len(self.items), 'file')} into {self.outdir}: {self.summary.skipped} already "
                  f"done, {len(todo) - len(self.summary.failed)} to colorize"
                  + (f" ({plural(len(self.tasks), 'task')}, {pool.name})" if pool else ""))
        return pool

    def file_done(self, key: str, frames: int, seconds: float) -> None:
        """A joined film is done."""
        item = self.by_key[key]
        digest, size = sha256_file(item.dst), os.path.getsize(item.dst)
        self.manifest.set_file(key, "done", frames=frames, seconds=seconds, sha256=digest, size=size, error=None)
        self.summary.done += 1
        self.finished_files += 1
        _say(self.cfg, f"[{self.finished_files}/{len(self.items)}] done {item.dst}: {frames} frames")

    def file_failed(self, key: str, reason: str) -> None:
        if self.manifest.file(key)["state"] == "failed":
            return
        src = self.by_key[key].src
        reason = reason.replace(f"{src}: ", "", 1)  # the summary names the file already
        self.manifest.set_file(key, "failed", error=reason)
        self.summary.failed.append((str(src), reason))
        self.finished_files += 1
        _say(self.cfg, f"[{self.finished_files}/{len(self.items)}] failed {src}: {reason}")

    def join(self, key: str) -> None:
        """A film whose segments are all done: joined into its output, checked frame for frame."""
        from vidcolor.io.segments import join_segments

        item = self.by_key[key]
        rows = self.manifest.segments(key)
        try:
            frames = join_segments(item.src, [r["path"] for r in rows], item.dst, self.cfg.opts)
        except VidcolorError as exc:
            self.file_failed(key, f"joining the segments failed: {one_line(exc)}")
            return
        made = sum(r["frames"] for r in rows)
        if frames != made:
            self.file_failed(key, f"the joined output has {frames} frames, its segments {made}")
            return
        self.file_done(key, frames, sum(r["seconds"] or 0 for r in rows))
        _drop_segments(self.manifest, item, rows)

    def started(self, task: Task) -> None:
        self.manifest.started(task.key, task.segment, source_stamp(task.src))

    def finished(self, task: Task, result: dict) -> None:
        """A worker's result: recorded, and the film joined when it was its last segment."""
        if result.get("fatal"):
            raise _Stop(result["error"])
        damage = result.get("damage") if result["ok"] else None
        if damage:
            damage = damage.replace(f"{task.src}: ", "", 1)
            if self.cfg.strict:
                result = {"ok": False, "error": f"{damage} (--strict)"}
        if task.segment is None:
            self.whole_file_finished(task, result, damage)
        elif result["ok"]:
            self.segment_done(task, result, damage)
        else:
            self.manifest.set_segment(task.key, task.segment, "failed", error=result["error"])
            self.seg_left[task.key].discard(task.segment)
            error = result["error"].replace(f"{task.src}: ", "", 1)
            self.file_failed(task.key, f"segment {task.segment + 1} of {len(self.seg_rows[task.key])}: {error}")

    def whole_file_finished(self, task: Task, result: dict, damage: str | None) -> None:
        if not result["ok"]:
            self.file_failed(task.key, result["error"])
            return
        self.manifest.set_file(task.key, "done", frames=result["frames"], seconds=result["seconds"],
                               sha256=result["sha256"], size=result["size"], error=None, warning=damage)
        if damage:
            self.summary.damaged.append((task.src, damage))
        self.summary.done += 1
        self.summary.frames += result["frames"]
        self.finished_files += 1
        _say(self.cfg, f"[{self.finished_files}/{len(self.items)}] done {task.dst}: {result['frames']} frames "
                       f"in {result['seconds']:.1f} s" + (f"; warning: {damage}" if damage else ""))

    def segment_done(self, task: Task, result: dict, damage: str | None) -> None:
        manifest = self.manifest
        if damage:
            manifest.set_file(task.key, manifest.file(task.key)["state"], warning=damage)
            self.summary.damaged.append((task.src, f"segment {task.segment + 1}: {damage}"))
        manifest.set_segment(task.key, task.segment, "done", frames=result["frames"],
                             seconds=result["seconds"], sha256=result["sha256"], size=result["size"], error=None)
        self.summary.frames += result["frames"]
        self.seg_left[task.key].discard(task.segment)
        if not self.seg_left[task.key] and manifest.file(task.key)["state"] != "failed":
            self.join(task.key)


def _segment_of(row):
    from vidcolor.io.segments import Segment

    return Segment(row["idx"], row["start"], row["end"], row["expected"])


def _drop_segments(manifest: Manifest, item: Item, rows) -> None:
    """A film's segment files, their folder and their rows: gone."""
    for r in rows:
        pathlib.Path(r["path"]).unlink(missing_ok=True)
        remove_partials(pathlib.Path(r["path"]))
    if rows:
        folder = pathlib.Path(rows[0]["path"]).parent
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # .vidcolor-segments, once empty
        manifest.forget_segments(item.key)
