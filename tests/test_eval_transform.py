"""The native eval transform gives timm's eval tensors bit for bit, without importing timm or torchvision.

The reference is ``timm.data.create_transform(**data_config, is_training=False)`` (torchvision's PIL
resize, crop and ToTensor, timm's ResizeKeepRatio / CenterCropOrPad, Normalize): every crop mode x
interpolation x crop_pct x size, on real photos and on images of awkward shapes.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision.config import CROP_MODES, INTERPOLATIONS, SeqParConfig
from vision.data import eval_transform, load_rgb, transforms
from vision.data.images import to_rgb
from vision.io import read_model_config, resolve_model_dir

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CROP_PCTS = (0.875, 1.0, 0.95, 0.9)
SIZES = ((3, 160, 160), (3, 224, 224), (3, 97, 97), (3, 100, 130))  # the last: non-square, (H, W)
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
TF_STYLE = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # the default model's: border fill 128
# Landscape, portrait, very wide and small, and a grayscale JPEG (RGB through load_rgb, as in the product).
PHOTOS = ("n01440764_tench.JPEG", "n01518878_ostrich.JPEG", "n04238763_slide_rule.JPEG", "n02692877_airship.JPEG")
# (width, height): very wide, very tall, smaller than every crop, 1 pixel wide / tall, 1x1, odd sides, one off
# square, exactly the 224 px model's scale size (no resize). Kept small: 'center' scales the short side up.
SHAPES = ((600, 61), (61, 600), (50, 40), (1, 9), (9, 1), (1, 1), (161, 97), (97, 161), (225, 224), (256, 341))
TOO_THIN = ((2000, 3), (3, 2000), (1000, 1), (1, 1000))  # 'border' would shrink the short side to 0 pixels


def data_config(crop_mode: str, interpolation: str, crop_pct: float, input_size, colours=IMAGENET) -> dict:
    return {"input_size": input_size, **colours, "crop_pct": crop_pct, "crop_mode": crop_mode,
            "interpolation": interpolation}


def reference(config: dict):
    from timm.data import create_transform

    return create_transform(**config, is_training=False)


def assert_matches_timm(config: dict, images: list[Image.Image]) -> int:
    """torch.equal(native, timm) on every image; where timm raises, the native transform raises ValueError.

    Returns how many images both transformed."""
    native, timm_tf = eval_transform(config), reference(config)
    compared = 0
    for image in images:
        try:
            expected = timm_tf(image)
        except ValueError:  # Pillow: "height and width must be > 0" ('border' of a 2000x3 image)
            with pytest.raises(ValueError, match="too thin"):
                native(image)
            continue
        got = native(image)
        assert got.dtype == torch.float32 and got.shape == expected.shape == (3, *config["input_size"][1:])
        assert torch.equal(got, expected), (config, image.size, (got - expected).abs().max().item())
        compared += 1
    return compared


def synthetic(width: int, height: int, seed: int = 0) -> Image.Image:
    """Noise with a smooth ramp: every interpolation's kernel and rounding shows."""
    rng = np.random.default_rng(seed + width * 7919 + height)
    ramp = np.add.outer(np.arange(height), np.arange(width))[:, :, None] * np.array([3, 5, 7])
    return Image.fromarray(((ramp + rng.integers(0, 64, (height, width, 3))) % 256).astype(np.uint8))


@pytest.fixture(scope="module")
def photos(shared_data) -> list[Image.Image]:
    folder = shared_data / "imagenet-samples"
    if not folder.is_dir():
        pytest.skip(f"no photo folder {folder}")
    return [load_rgb(folder / name) for name in PHOTOS if (folder / name).is_file()]


@pytest.fixture(scope="module")
def shapes() -> list[Image.Image]:
    return [synthetic(w, h) for w, h in SHAPES]


def default_data_config() -> dict:
    return SeqParConfig.from_dict(read_model_config(resolve_model_dir("default"))).data_config()


def test_settings_are_the_configs():
    """The transform knows exactly the crop modes and interpolations vision.config.Preprocessing allows."""
    assert transforms.CROP_MODES == CROP_MODES
    assert tuple(transforms.RESAMPLING) == INTERPOLATIONS


@pytest.mark.parametrize("crop_mode", CROP_MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_photos_match_timm(photos, crop_mode, interpolation):
    assert len(photos) == len(PHOTOS) and photos[-1].mode == "RGB"
    for i, (crop_pct, size) in enumerate(itertools.product(CROP_PCTS, SIZES)):
        colours = TF_STYLE if i % 2 else IMAGENET
        assert assert_matches_timm(data_config(crop_mode, interpolation, crop_pct, size, colours), photos) == 4


@pytest.mark.parametrize("crop_mode", CROP_MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_awkward_shapes_match_timm(shapes, crop_mode, interpolation):
    for i, (crop_pct, size) in enumerate(itertools.product(CROP_PCTS, SIZES)):
        colours = TF_STYLE if i % 2 else IMAGENET
        config = data_config(crop_mode, interpolation, crop_pct, size, colours)
        assert assert_matches_timm(config, shapes) == len(SHAPES)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_too_thin_for_border_raises_like_timm(interpolation):
    """timm's 'border' resize rounds the short side of a 2000x3 image to 0 pixels and Pillow refuses: the native
    transform raises a ValueError that says so (the other crop modes scale the short side up)."""
    for crop_pct, size in itertools.product(CROP_PCTS, SIZES):
        config = data_config("border", interpolation, crop_pct, size)
        assert assert_matches_timm(config, [synthetic(w, h) for w, h in TOO_THIN]) == 0


def test_default_models_data_config_matches_timm(shapes, shared_data):
    config = default_data_config()
    assert config["input_size"] == (3, 160, 160) and config["crop_mode"] == "center"
    folder = shared_data / "imagenet-samples"
    photos = [load_rgb(p) for p in sorted(folder.glob("*.JPEG"))[::50]] if folder.is_dir() else []
    assert assert_matches_timm(config, photos + shapes) == len(photos) + len(shapes)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_other_modes_match_timm_after_the_pipelines_rgb_conversion(mode):
    """The product converts every frame with to_rgb (load_rgb, crossmodal.frames.to_pil) before the
    transform; the transform itself refuses other modes with a ValueError that names to_rgb."""
    base = synthetic(123, 77)
    if mode in ("I;16", "I"):
        image = Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)).convert(mode)
    elif mode == "F":
        image = Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255)
    elif mode == "P":
        image = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=17)
    else:
        image = base.convert(mode)
    assert image.mode == mode
    for crop_mode in CROP_MODES:
        assert assert_matches_timm(data_config(crop_mode, "bicubic", 0.875, (3, 64, 64)), [to_rgb(image)]) == 1
        with pytest.raises(ValueError, match=rf"RGB image, got mode '{mode}'.*to_rgb"):
            eval_transform(data_config(crop_mode, "bicubic", 0.875, (3, 64, 64)))(image)


def test_input_size_forms_and_pickling(shapes):
    """(3, H, W), (H, W) and an int give the same transform; it survives pickling (data-loader workers)."""
    config = data_config("border", "bilinear", 0.9, (3, 97, 97), TF_STYLE)
    tf = eval_transform(config)
    for image in shapes[:3]:
        expected = tf(image)
        for size in ((97, 97), 97):
            assert torch.equal(eval_transform({**config, "input_size": size})(image), expected)
        assert torch.equal(pickle.loads(pickle.dumps(tf))(image), expected)


@pytest.mark.parametrize(("change", "message"), [
    ({"crop_mode": "zoom"}, r"crop_mode must be one of \('center', 'squash', 'border'\), got 'zoom'"),
    ({"interpolation": "cubic"}, (r"interpolation must be one of \('bilinear', 'bicubic', 'nearest', 'box', "
                                  r"'hamming', 'lanczos'\), got 'cubic'")),
    ({"interpolation": "random"}, r"interpolation must be one of .* got 'random'"),
    ({"crop_pct": 0.0}, r"crop_pct must be a number in \(0, 1\], got 0.0"),
    ({"crop_pct": 1.2}, r"crop_pct must be a number in \(0, 1\], got 1.2"),
    ({"crop_pct": None}, r"crop_pct must be a number in \(0, 1\], got None"),
    ({"input_size": (3, 0, 10)}, r"input_size must be a positive int, \(H, W\) or \(3, H, W\), got \(3, 0, 10\)"),
    ({"input_size": (1, 10, 10)}, r"input_size must be .* got \(1, 10, 10\)"),
    ({"mean": (0.5, 0.5)}, r"mean must be 3 finite numbers \(R, G, B\), got \(0.5, 0.5\)"),
    ({"std": (0.5, 0.0, 0.5)}, r"std must be positive"),
    ({"scale": (0.08, 1.0)}, r"data_config needs exactly the keys .*unknown \['scale'\]"),
])
def test_bad_data_config_names_the_option_and_the_allowed_values(change, message):
    with pytest.raises(ValueError, match=message):
        eval_transform({**data_config("center", "bicubic", 0.875, (3, 32, 32)), **change})


def test_missing_setting_is_named():
    config = data_config("center", "bicubic", 0.875, (3, 32, 32))
    del config["crop_mode"]
    with pytest.raises(ValueError, match=r"data_config needs exactly the keys .*missing \['crop_mode'\]"):
        eval_transform(config)


def test_bad_images_raise():
    tf = eval_transform(data_config("center", "bicubic", 0.875, (3, 32, 32)))
    with pytest.raises(ValueError, match="empty image"):
        tf(Image.new("RGB", (0, 5)))
    with pytest.raises(TypeError, match="expects a PIL image, got ndarray"):
        tf(np.zeros((5, 5, 3), np.uint8))


def _run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _photo(tmp_path: Path) -> Path:
    data = pytest.importorskip("skimage.data")
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=90)
    return path


REPORT = """
x = eval_transform({config!r})(load_rgb({photo!r}))
print(json.dumps({{"shape": list(x.shape), "finite": bool(torch.isfinite(x).all()),
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("timm", "torchvision"))}}))
"""


def test_eval_path_modules_import_neither_timm_nor_torchvision(tmp_path):
    """vision.data.transforms, .images and .imagenet alone (without the vision package's __init__, which is
    not this module's to trim): building the transform and preprocessing a photo file loads no timm."""
    code = f"""
import json, sys, types
for name, folder in (("vision", {str(REPO / "vision")!r}), ("vision.data", {str(REPO / "vision" / "data")!r})):
    package = types.ModuleType(name)
    package.__path__ = [folder]
    sys.modules[name] = package
import torch
from vision.data.images import load_rgb
from vision.data.transforms import eval_transform
assert "vision.config" not in sys.modules and "vision.nn" not in sys.modules
""" + REPORT.format(config=default_data_config(), photo=str(_photo(tmp_path)))
    assert _run_python(code) == {"shape": [3, 160, 160], "finite": True, "imported": []}


def test_product_preprocessing_imports_neither_timm_nor_torchvision(tmp_path):
    """A fresh process: `from vision.data import eval_transform, load_rgb`, transform a photo file."""
    code = "import json, sys, torch\nfrom vision.data import eval_transform, load_rgb\n" + REPORT.format(
        config=default_data_config(), photo=str(_photo(tmp_path)))
    assert _run_python(code) == {"shape": [3, 160, 160], "finite": True, "imported": []}
