"""Frames in every form give the same model input; bad frames raise clear errors; guides are values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from crossmodal import Guide
from crossmodal.frames import FramePreprocessor, split_batch, to_pil
from tests.vision_helpers import tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tiny_model(image_size=48)


@pytest.fixture(scope="module")
def pre(model) -> FramePreprocessor:
    return FramePreprocessor.for_model(model)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


def test_every_frame_form_gives_the_same_input(pre, rgb, tmp_path):
    path = tmp_path / "frame.png"
    Image.fromarray(rgb).save(path)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    forms = [rgb, Image.fromarray(rgb), path, str(path), chw, chw.float() / 255]
    inputs = [pre([f]) for f in forms]
    assert inputs[0].shape == (1, 3, 48, 48)
    assert all(torch.equal(x, inputs[0]) for x in inputs[1:])
    assert torch.equal(pre([np.ascontiguousarray(rgb[:, :, ::-1])], bgr=True), inputs[0])
    assert not torch.equal(pre([rgb], bgr=True), inputs[0])


def test_preprocessing_follows_the_models_data_config(model, rgb):
    config = model.data_config()
    assert config["input_size"] == (3, 48, 48)
    assert config["mean"] == pytest.approx((0.485, 0.456, 0.406))  # timm's resnet18 config
    flat = np.full((10, 10, 3), 128, np.uint8)
    expected = (128 / 255 - torch.tensor(config["mean"])) / torch.tensor(config["std"])
    assert torch.allclose(FramePreprocessor(config)([flat])[0, :, 5, 5], expected.float(), atol=1e-6)
    tf_style = tiny_model(image_size=48)
    tf_style.config = tf_style.config.replace(preprocessing={"mean": [0.5] * 3, "std": [0.5] * 3})
    assert torch.allclose(FramePreprocessor.for_model(tf_style)([flat])[0, :, 5, 5],
                          torch.full((3,), 128 / 255 * 2 - 1), atol=1e-6)
    with pytest.raises(ValueError, match=r"preprocessing has unknown fields \['scale'\]"):
        tf_style.config.replace(preprocessing={"mean": [0.5] * 3, "std": [0.5] * 3, "scale": 2})


def test_batches_in_every_form(pre, rgb):
    stacked = np.stack([rgb, rgb[::-1].copy()])
    expected = pre([rgb, rgb[::-1].copy()])
    assert torch.equal(pre(split_batch(stacked)), expected)
    assert torch.equal(pre(split_batch(torch.from_numpy(stacked).permute(0, 3, 1, 2))), expected)
    assert torch.equal(pre(split_batch((rgb, rgb[::-1].copy()))), expected)
    with pytest.raises(ValueError, match="the batch of frames is empty"):
        split_batch([])
    with pytest.raises(ValueError, match="a batch must be a list of frames.*ndarray of shape \\(37, 53, 3\\)"):
        split_batch(rgb)


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((8, 8), np.uint8), r"HxWx3 .* got shape \(8, 8\)"),
        (np.zeros((8, 8, 4), np.uint8), r"HxWx3 .* got shape \(8, 8, 4\)"),
        (np.zeros((8, 8, 3), np.float32), "dtype uint8, got float32"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (torch.zeros(8, 8, 3, dtype=torch.uint8), r"3xHxW \(RGB\), got shape \(8, 8, 3\)"),
        (torch.zeros(3, 0, 8), "empty"),
        (torch.full((3, 8, 8), 2.0), r"finite values in \[0, 1\]"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "uint8 or float"),
        (Image.new("RGB", (0, 5)), "empty"),
        (42, "unsupported frame type int"),
    ],
)
def test_bad_frames_raise_clear_errors(frame, message):
    with pytest.raises(ValueError, match=message):
        to_pil(frame)


def test_bad_files_raise_clear_errors(tmp_path, rgb):
    with pytest.raises(FileNotFoundError, match="missing.jpg not found"):
        to_pil(tmp_path / "missing.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image file .*junk.jpg"):
        to_pil(junk)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read image file .*empty.png"):
        to_pil(empty)
    with pytest.raises(ValueError, match="bgr=True applies to numpy frames"):
        to_pil(Image.fromarray(rgb), bgr=True)


def test_guides_are_validated_hashable_values():
    guide = Guide((5, 4, 4), {"c": 2.0, 5: 1.5, np.int64(4): 2})
    assert guide.classes == (4, 5)
    assert guide.gains == ((4, 2.0), (5, 1.5), ("c", 2.0))
    assert hash(guide) == hash(Guide((4, 5), [(5, 1.5), ("c", 2.0), (4, 2.0)]))
    with pytest.raises(AttributeError):
        guide.classes = (1,)
    assert guide.gain_map() == {4: 2.0, 5: 1.5, "c": 2.0}
    assert guide.to_dict()["gains"] == {"4": 2.0, "5": 1.5, "c": 2.0}
    with pytest.raises(ValueError, match="at least one class"):
        Guide(())
    with pytest.raises(ValueError, match="finite number >= 0"):
        Guide((1,), {1: -1.0})
    with pytest.raises(ValueError, match="integer class ids"):
        Guide(("cat",))
    with pytest.raises(ValueError, match="class id \\(int\\) or a tree-node name"):
        Guide((1,), {1.5: 2.0})


def test_guide_validation_and_node_gains_added_by_a_model_tree():
    with pytest.raises(ValueError, match="not confident has no classes"):
        Guide((1,), confident=False)
    with pytest.raises(ValueError, match="source must be one of"):
        Guide((1,), source="smell")
    guide = Guide.for_classes([4, 5], 2.0).with_gains({"c": 2.0, 4: 9.0})
    assert guide.gains == ((4, 2.0), (5, 2.0), ("c", 2.0))  # a gain the guide has is kept
    assert Guide.abstain(["no match"]).to_dict()["explanation"].startswith("unguided (confident=False)")


def _png_with_size(path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    import struct
    import zlib

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))


def test_high_bit_depth_images_are_scaled_not_saturated(pre, tmp_path):
    """A 16-bit grayscale photo gives the input of its 8-bit copy (Pillow alone saturates it to white)."""
    import tifffile

    rng = np.random.default_rng(1)
    gray8 = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    gray16 = gray8.astype(np.uint16) * 257  # the same picture with 16 bits per pixel
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    expected = pre([np.repeat(gray8[:, :, None], 3, 2)])
    assert torch.equal(pre([tmp_path / "g16.png"]), expected)
    assert torch.equal(pre([Image.open(tmp_path / "g16.png")]), expected)
    assert torch.equal(pre([Image.fromarray(gray16.astype(np.int32)).convert("I")]), expected)
    assert torch.equal(pre([Image.fromarray(gray8.astype(np.float32) / 255, mode="F")]), expected)
    rgb8 = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb8.astype(np.uint16) * 257)  # 48-bit RGB
    assert torch.equal(pre([tmp_path / "rgb16.tif"]), pre([rgb8]))


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    from vision.data.images import MAX_IMAGE_PIXELS

    bomb = tmp_path / "bomb.png"
    _png_with_size(bomb, 30_000, 30_000)  # 900 MP claimed in a 70-byte file
    assert bomb.stat().st_size < 200
    with pytest.raises(ValueError, match=f"bomb.png.* (more than the limit of {MAX_IMAGE_PIXELS:,}|too large)"):
        to_pil(bomb)
    big = tmp_path / "big.png"
    _png_with_size(big, 10_000, 9_000)  # above the limit, below Pillow's own error threshold
    with pytest.raises(ValueError, match="big.png"):
        to_pil(big)
