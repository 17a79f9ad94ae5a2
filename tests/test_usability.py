"""What the `vidcolor` command says and chooses for the user: pixel formats editing codecs take,
the y4m pipe's colour tags, the start line, --keep-colour, labelled previews and video tools'
conventions (-y, HH:MM:SS times, quiet encoders, batch progress)."""

from __future__ import annotations

import pytest

from conftest import make_video, probe
from vidcolor.cli import main


def vidcolor(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def lines(err: str) -> list[str]:
    """The lines left on a terminal: progress bars are redrawn with carriage returns and cleared."""
    return [x for x in err.replace("\r", "\n").splitlines() if x.strip() and "|" not in x]


# --------------------------------------------------------------------------
# 2. editing codecs and odd sizes get a pixel format that fits
# --------------------------------------------------------------------------


def test_prores_and_odd_sizes_get_a_pixel_format_that_fits(capsys, tmp_path):
    src = make_video(tmp_path / "in.mkv", size=(64, 48), frames=3)
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "edit.mov", "--codec", "prores_ks")
    assert rc == 0, err
    assert probe(tmp_path / "edit.mov").pix_fmt == "yuv422p10le"
    said = [x for x in lines(err) if "yuv422p10le" in x]
    assert len(said) == 1 and "prores_ks" in said[0] and "--pix-fmt" in said[0], err

    odd = make_video(tmp_path / "odd.mkv", size=(63, 47), frames=3)
    rc, _, err = vidcolor(capsys, odd, "-o", tmp_path / "odd.mp4", "--quiet", "--crf", 0)
    assert rc == 0, err
    p = probe(tmp_path / "odd.mp4")
    assert (p.pix_fmt, p.width, p.height) == ("yuv444p", 63, 47)
    assert err == ""  # --quiet: not even the pixel format's line
    src_luma = probe(odd).planes
    assert all((a[0] == b[0]).all() for a, b in zip(src_luma, p.planes))  # luma kept exactly

    # an explicit --pix-fmt that does not fit: one line naming the fix, nothing written
    rc, _, err = vidcolor(capsys, odd, "-o", tmp_path / "bad.mp4", "--pix-fmt", "yuv420p")
    assert rc == 1 and len(lines(err)) == 1, err
    assert "odd.mkv" in err and "63x47" in err and "leave --pix-fmt out" in err
    rc, _, err = vidcolor(capsys, src, "-o", tmp_path / "bad.mov", "--codec", "prores_ks", "--pix-fmt", "yuv420p")
    assert rc == 1 and len(lines(err)) == 1 and "yuv422p10le" in err, err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["edit.mov", "in.mkv", "odd.mkv", "odd.mp4"]
