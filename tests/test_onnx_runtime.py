"""GuidedClassifier(runtime="onnxruntime"): cutouts run from exported files, cached on disk, same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from crossmodal import Guide, GuidedClassifier  # noqa: E402
from crossmodal.onnx_files import OnnxFiles, default_cache_dir  # noqa: E402
from tests.vision_helpers import tiny_model  # noqa: E402

GUIDES = [Guide((4, 5, 0), {0: 2.0, 4: 2.0, 5: 2.0, "a": 1.5, "c": 1.5}), Guide((1, 2), {1: 3.0, 2: 0.5}),
          Guide((6,), {"unknown": 2.0})]


@pytest.fixture(scope="module")
def model():
    return tiny_model(image_size=64)


def inputs(model, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def same_results(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert (x.mode, x.fallback, x.gains, x.cutout_cached) == (y.mode, y.fallback, y.gains, y.cutout_cached)
        assert x.cost == y.cost or x.fallback.startswith("the image does not support")  # onnxruntime: trunk twice
        assert [p.class_id for p in x.predictions] == [p.class_id for p in y.predictions]
        np.testing.assert_allclose([p.prob for p in x.predictions], [p.prob for p in y.predictions], atol=1e-5)
        assert x.cue_agreement == pytest.approx(y.cue_agreement, abs=1e-5)


@pytest.mark.parametrize("mode", ["cutout", "cutout+attend"])
def test_onnxruntime_gives_the_torch_runtimes_predictions(model, mode, tmp_path):
    torch_clf = GuidedClassifier(model)
    ort_clf = GuidedClassifier(model, runtime="onnxruntime", onnx_cache_dir=tmp_path)
    x = inputs(model)
    for guide in GUIDES:
        for _ in range(2):  # the second time from the caches
            same_results(torch_clf.predict_preprocessed(x, guide, mode, top_k=3),
                         ort_clf.predict_preprocessed(x, guide, mode, top_k=3))
        same_results(torch_clf.predict_preprocessed(x, guide, mode, min_agreement=0.6),
                     ort_clf.predict_preprocessed(x, guide, mode, min_agreement=0.6))
    # one file per class subset and gains input (the third guide's gain key is unknown: it runs plain)
    assert len(list(tmp_path.glob("*.onnx"))) == len(ort_clf.cutouts.files.export_seconds) == 3


def test_files_are_exported_once_and_reused_across_classifiers(model, tmp_path):
    first = GuidedClassifier(model, runtime="onnxruntime", onnx_cache_dir=tmp_path)
    x = inputs(model)
    expected = first.predict_preprocessed(x, GUIDES[0], "cutout+attend")
    files = sorted(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and len(first.cutouts.files.export_seconds) == 1
    second = GuidedClassifier(model, runtime="onnxruntime", onnx_cache_dir=tmp_path)
    same_results(expected, second.predict_preprocessed(x, GUIDES[0], "cutout+attend"))
    assert second.cutouts.files.export_seconds == [] and sorted(tmp_path.glob("*.onnx")) == files
    files[0].write_bytes(b"truncated")  # a broken file is exported again
    third = GuidedClassifier(model, runtime="onnxruntime", onnx_cache_dir=tmp_path)
    same_results(expected, third.predict_preprocessed(x, GUIDES[0], "cutout+attend"))
    assert len(third.cutouts.files.export_seconds) == 1 and files[0].stat().st_size > 1000


def test_file_names_follow_model_classes_and_variant(model, tmp_path):
    files = OnnxFiles(model, tmp_path)
    other = OnnxFiles(tiny_model(seed=1, image_size=64), tmp_path)
    names = {files.path((4, 5), True), files.path((5, 4), True), files.path((4, 5), False), other.path((4, 5), True)}
    assert len(names) == 4 and files.path((4, 5), True) == OnnxFiles(model, tmp_path).path((4, 5), True)


def test_the_cache_folder_is_bounded_least_recently_used_first(model, tmp_path):
    files = OnnxFiles(model, tmp_path)
    files.session((0, 1), False)
    size = files.path((0, 1), False).stat().st_size
    files.max_bytes = int(2.5 * size)
    files.session((2, 3), False)
    files.session((0, 1), False)  # used again: now the most recent
    files.session((4, 5), False)
    assert sorted(tmp_path.glob("*.onnx")) == sorted([files.path((0, 1), False), files.path((4, 5), False)])
    files.max_bytes = 1
    files.session((6,), False)  # the newest file always stays
    assert list(tmp_path.glob("*.onnx")) == [files.path((6,), False)]


def test_options_are_checked(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="runtime must be one of"):
        GuidedClassifier(model, runtime="tensorrt")
    with pytest.raises(ValueError, match="max_bytes"):
        GuidedClassifier(model, runtime="onnxruntime", onnx_cache_bytes=0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "crossmodal" / "onnx"
    with pytest.raises(ValueError, match="runtime='onnxruntime'"):
        GuidedClassifier(model).onnx_logits(inputs(model), GUIDES[0], "cutout")


def test_default_model_runtimes_agree_on_real_photos(shared_data, tmp_path):
    from vision import load_seqpar
    from vision.data import list_labelled_images

    model = load_seqpar("default")
    photos = [p.path for p in list_labelled_images(shared_data / "imagenet-samples")[::250]]
    guide = Guide((281, 282, 283, 284, 285), {281: 2.0, 282: 2.0, 283: 2.0, 284: 2.0, 285: 2.0})
    torch_clf = GuidedClassifier(model)
    ort_clf = GuidedClassifier(model, runtime="onnxruntime", onnx_cache_dir=tmp_path)
    for mode in ("cutout", "cutout+attend"):
        same_results(torch_clf.predict_batch(photos, guide, mode), ort_clf.predict_batch(photos, guide, mode))
