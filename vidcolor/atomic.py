"""Files that appear whole or not at all: one `atomic_output` for every writer.

A file is written under a temporary name beside its target (same folder, same
file system) and renamed into place only when the writing block completes; on
an error or an interrupt the temporary file is removed, so a crash, Ctrl-C or a
full disk never leaves a half-written output under the real name.

Two temporary names: ``NAME.partial`` (weights, checkpoints), and the hidden
``.STEM.partial-PID.EXT`` of the videos and images (`partial_path`), whose
writer's process id lets `sweep_stale_partials` remove the leftovers of a
process killed with SIGKILL. `sha256_file` checks a finished file (batch manifests, the data set).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import pathlib
import re
from collections.abc import Iterator

from vidcolor.errors import OutputError

#: bytes in a file name on Linux, macOS and Windows file systems.
NAME_MAX = 255
_PID_DIGITS = 7  # pid_max is at most 4194304


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, hidden: bool = False, overwrite: bool = True,
                  fsync: bool = False) -> Iterator[pathlib.Path]:
    """Yield the temporary path to write ``path`` under; rename it to ``path`` when the block completes.

    ``hidden``: the temporary name is `partial_path`'s (swept after a crash), else ``NAME.partial``.
    ``overwrite``: False never replaces a file that appeared meanwhile (`publish`).
    ``fsync``: flush the file to the disk before the rename (a power cut keeps old or new, whole).
    The temporary file is removed whatever happens, the block's error or interrupt included.
    """
    path = pathlib.Path(path)
    tmp = partial_path(path) if hidden else path.with_name(path.name + ".partial")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        publish(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never made (the folder is a file)
            tmp.unlink()


def publish(tmp: pathlib.Path, dst: pathlib.Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``dst``; without ``overwrite``, never over a file that appeared
    meanwhile (another program's): a hard link fails if the name exists, a rename would not."""
    if overwrite:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise OutputError(f"{dst}: another program created this file while vidcolor was writing; it was left "
                          "as it is: pass --overwrite to replace it or choose another name with -o") from None
    except OSError as exc:  # no hard links here (FAT, some network shares): check, then rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise OutputError(f"{dst}: another program created this file while vidcolor was writing; it was "
                              "left as it is: pass --overwrite to replace it or choose another name with -o") from None
        os.rename(tmp, dst)
        return
    os.unlink(tmp)


def partial_path(dst: pathlib.Path, pid: int | None = None) -> pathlib.Path:
    """The hidden name ``dst`` is written under (.STEM.partial-PID.EXT), its stem cut to fit NAME_MAX."""
    dst = pathlib.Path(dst)
    pid = os.getpid() if pid is None else pid
    room = NAME_MAX - len(os.fsencode(f"..partial-{'9' * _PID_DIGITS}{dst.suffix}"))
    stem = os.fsdecode(os.fsencode(dst.stem)[:max(room, 1)])
    return dst.with_name(f".{stem}.partial-{pid}{dst.suffix}")


def partials_of(dst: pathlib.Path) -> list[tuple[pathlib.Path, int]]:
    """The temporary files of ``dst`` (any writer's) and their writers' process ids."""
    dst = pathlib.Path(dst)
    head, _, _ = partial_path(dst, 0).name.rpartition(".partial-")
    found = []
    try:
        for p in dst.parent.glob(f"{glob.escape(head)}.partial-*{glob.escape(dst.suffix)}"):
            m = re.fullmatch(r"(\d+)", p.name[len(head) + 9:len(p.name) - len(dst.suffix)])
            if m:
                found.append((p, int(m.group(1))))
    except OSError:
        pass
    return found


def sweep_stale_partials(dst: pathlib.Path) -> None:
    """Remove the temporary files of ``dst`` whose writer process is gone (killed by SIGKILL, a crash)."""
    for p, pid in partials_of(dst):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's): its file is its own
        except ProcessLookupError:
            pass
        except OSError:
            continue
        p.unlink(missing_ok=True)


def sha256_file(path: str | pathlib.Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks (the file is closed afterwards)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
