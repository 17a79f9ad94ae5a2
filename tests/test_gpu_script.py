"""Smoke test of the GPU checks (benchmarks/gpu.sh, benchmarks/gpu_checks.py) on the CPU.

GPU time is lent in minutes: a script that breaks on the GPU machine wastes it.
``--device cpu --quick`` runs every check's code at tiny sizes (the
out-of-memory check is skipped: it needs CUDA); this test runs it in a
subprocess with $OUT set, as the GPU machine does, and checks the JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECTIONS = ("precision", "oom", "vs", "fps")


def test_gpu_sh_is_valid_bash():
    sh = ROOT / "benchmarks" / "gpu.sh"
    assert os.access(sh, os.X_OK)
    text = sh.read_text()
    assert "set -euo pipefail" in text and "gpu_checks.py" in text
    subprocess.run(["bash", "-n", str(sh)], check=True)


def test_quick_cpu_run_writes_every_section(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_checks.py"), "--device", "cpu", "--quick"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    # 1: a check flagged a finding (not a broken script: "error" statuses are checked below)
    assert out.returncode in (0, 1), log
    res = json.loads((tmp_path / "gpu.json").read_text())

    assert res["meta"]["device"] == "cpu" and res["meta"]["quick"] is True
    for name in SECTIONS:
        sec = res[name]
        assert sec["status"] in ("ok", "flagged", "fail", "skipped"), (name, sec, log)
        assert sec["summary"] and "\n" not in sec["summary"]
        assert sec["summary"] in out.stdout  # the one-line summary is printed
        assert sec["seconds"] >= 0
        if sec["status"] == "skipped":
            assert sec["skipped"] is True and sec["reason"]

    # the OOM retry needs CUDA: skipped on the CPU, and says why
    assert res["oom"]["skipped"] is True and "CUDA" in res["oom"]["reason"]

    prec = res["precision"]
    assert prec["status"] in ("ok", "flagged")
    model = prec["default_model"]
    for dtype in ("float16", "bfloat16"):
        for pic in prec["pictures"]:
            r = prec["results"][model][f"{dtype}/{pic}"]
            assert r["mean_abs_diff"] >= 0 and r["max_abs_diff"] >= r["mean_abs_diff"]
            assert r["fp32_mean_abs_chroma"] > 0 and r["flagged"] == (r["mean_diff_to_magnitude"] > 0.05)
    assert "synthetic" in prec["pictures"]
    assert "bikes" in prec["pictures"] or prec["bikes_skipped"]

    vs = res["vs"]
    if vs["status"] != "skipped":
        assert vs["status"] == "ok", vs
        for r in vs["results"].values():
            assert r["max_diff_vs_cpu"] == 0 and r["reverse_order_max_diff"] == 0  # CPU against CPU

    fps = res["fps"]
    assert fps["status"] == "ok", fps
    for dtype in ("float16", "bfloat16"):
        r = fps["results"][f"default/{dtype}"]
        for key in ("memory_fps", "device_fps", "end_to_end_fps", "ratio_end_to_end_to_memory"):
            assert r[key] > 0, (dtype, key, r)
        assert r["end_to_end_frames"] == fps["clip_frames"]
    assert fps["ddcolor_skipped"]  # --quick leaves ddcolor-large out, with the reason
