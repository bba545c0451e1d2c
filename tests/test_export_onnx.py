"""ONNX export: onnxruntime equals PyTorch (full models, cutouts, PHL/NHL presets, gains), metadata, size, CLIs."""

import dataclasses
import json

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.vision_helpers import randomise_norms, tiny_model  # noqa: E402
from vision import SeqParModel, load_seqpar  # noqa: E402
from vision.io import model_digest  # noqa: E402
from vision.onnx import OnnxSeqPar, export_classes, gain_keys, gain_vector, read_metadata  # noqa: E402
from vision.presets import preset  # noqa: E402

ATOL = 1e-4
CATS = [281, 282, 283, 284, 285]


def _check(net: SeqParModel, path, x: torch.Tensor, gains=None, rtol: float = 0.0) -> None:
    """onnxruntime's logits (attended and plain) equal the model's within ATOL (+ ``rtol`` of their size)."""
    session = OnnxSeqPar(path)
    with torch.no_grad():
        attended, plain = net.attend_branches(net.trunk(x), net.level_gains(gains, x.shape[0]))
    vector = gain_vector(net, gains, x.shape[0]) if session.has_gains else None
    out, out_plain = session.run(x.numpy(), vector)
    np.testing.assert_allclose(out, attended.numpy(), atol=ATOL, rtol=rtol)
    np.testing.assert_allclose(out_plain, plain.numpy(), atol=ATOL, rtol=rtol)
    assert out.shape == (x.shape[0], net.config.num_classes)


def _inputs(net: SeqParModel, batch: int, seed: int = 0) -> torch.Tensor:
    size = net.config.image_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backbone", ["resnet18", "convnextv2_atto", "tf_efficientnet_lite0"])
def test_tiny_models_and_cutouts_match_torch_with_and_without_gains(backbone, tmp_path, monkeypatch):
    monkeypatch.setattr("vision.model.CHUNK_BYTES", 2**14)  # levels run in chunks of few siblings, as big models do
    model = tiny_model(backbone, image_size=64)
    cut = model.cutout([5, 0, 4])
    gains = {0: 2.5, "c": 0.5, 3: 0.0, "a": 1.7}
    for net, name in ((model, "full"), (cut, "cut")):
        plain_file = net.export_onnx(tmp_path / f"{name}_plain.onnx", gains=False)
        gains_file = net.export_onnx(tmp_path / f"{name}_gains.onnx")
        for batch in (1, 3):  # dynamic batch (traced at 2)
            x = _inputs(net, batch)
            _check(net, plain_file, x)
            _check(net, gains_file, x)  # every gain 1: exactly the plain logits
            known = {k: v for k, v in gains.items() if k in net.class_ids or k in net.hierarchy.node_names}
            _check(net, gains_file, x, known)
        per_image = torch.rand(3, net.config.num_classes, generator=torch.Generator().manual_seed(1)) * 3
        _check(net, gains_file, _inputs(net, 3), per_image)  # (B, N) gains: one set per image


def test_gains_without_a_gains_input_are_refused(tmp_path):
    model = tiny_model()
    session = OnnxSeqPar(model.export_onnx(tmp_path / "plain.onnx", gains=False))
    assert not session.has_gains and session.metadata["gain_keys"] is None
    with pytest.raises(ValueError, match="exported without a gains input"):
        session.run(_inputs(model, 1).numpy(), gain_vector(model, {0: 2.0}))


@pytest.mark.parametrize("name", ["phl_small_resnet50", "nhl_resnet50"])
def test_phl_and_nhl_presets_and_their_cutouts_match_torch(name, tmp_path):
    torch.manual_seed(0)
    model = SeqParModel(preset(name, num_classes=8, image_size=64))
    randomise_norms(model)
    model.eval()
    nodes = model.hierarchy.node_names
    for net, gains in ((model, {1: 3.0, nodes[-1]: 0.5} if len(nodes) > 1 else {1: 3.0}),
                       (model.cutout([6, 1, 2]), {1: 2.0, 6: 0.25})):
        path = export_classes(net, None, tmp_path / "m.onnx")
        for g in (None, gains):
            _check(net, path, _inputs(net, 2, seed=3), g, rtol=1e-5)  # random weights: logits up to ~150


def test_metadata_is_json_and_describes_the_cutout(tmp_path):
    model = tiny_model(image_size=64)
    path = export_classes(model, [4, 1], tmp_path / "cut.onnx", provenance={"source": "test"})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    raw = {p.key: p.value for p in proto.metadata_props}
    metadata = {k: json.loads(v) for k, v in raw.items()}  # every value is JSON
    cut = model.cutout([4, 1])
    assert metadata == read_metadata(path)
    assert metadata["class_ids"] == [4, 1] and metadata["class_names"] == ["4", "1"]
    expected = json.loads(json.dumps(dataclasses.asdict(model.config.preprocessing)))
    assert metadata["preprocessing"] == {"image_size": 64, **expected, "steps": metadata["preprocessing"]["steps"]}
    assert metadata["calibration"] == dataclasses.asdict(cut.config.calibration)
    assert metadata["gain_keys"] == gain_keys(cut) == ["a", "b", 1, "c", 4]
    assert metadata["hierarchy"] == cut.config.hierarchy
    assert (metadata["inputs"], metadata["outputs"]) == (["image", "gains"], ["logits", "plain_logits"])
    provenance = metadata["provenance"]
    assert provenance["model_digest"] == model_digest(cut) != model_digest(model)
    assert provenance["cutout_of"] == {"digest": model_digest(model), "num_classes": 7}
    assert (provenance["source"], provenance["variant"], provenance["opset"]) == ("test", "fp32", 17)
    assert [i.name for i in proto.graph.input] == ["image", "gains"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _initializer_values(path) -> int:
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


def test_file_holds_only_the_kept_branches(tmp_path):
    """The file's weights are the model's (BatchNorm folded into convolutions): a cutout's only its kept branches."""
    model = tiny_model(image_size=64)
    for net in (model, model.cutout([0]), model.cutout([4, 5])):
        path = net.export_onnx(tmp_path / "m.onnx", gains=False)
        values = sum(t.numel() for t in net.state_dict().values())
        assert 0.97 * values <= _initializer_values(path) <= values
        assert 4 * 0.97 * values <= path.stat().st_size <= 4 * values + 150_000  # + the graph: a chunk per parent


def test_only_float32_models_export(tmp_path):
    with pytest.raises(ValueError, match="needs a float32 model"):
        tiny_model().half().export_onnx(tmp_path / "h.onnx")
    assert not (tmp_path / "h.onnx").exists()


def test_export_keeps_the_models_mode(tmp_path):
    model = tiny_model().train()
    model.export_onnx(tmp_path / "m.onnx", gains=False)
    assert model.training and model.levels[0].training


def test_fp16_and_int8_variants_keep_metadata_and_stay_close(tmp_path):
    from vision.quantize import to_fp16, to_int8

    model = tiny_model(image_size=64)
    fp32 = model.export_onnx(tmp_path / "m.onnx")
    x = _inputs(model, 4).numpy()
    calibration = [_inputs(model, 2, seed=s).numpy() for s in range(4)]
    ref = OnnxSeqPar(fp32).run(x, gain_vector(model, {0: 2.0}))[0]
    for variant, path in (("fp16", to_fp16(fp32, tmp_path / "m16.onnx")),
                          ("int8", to_int8(fp32, tmp_path / "m8.onnx", calibration))):
        session = OnnxSeqPar(path)
        metadata = session.metadata
        assert metadata["provenance"]["variant"] == variant
        assert {k: v for k, v in metadata.items() if k != "provenance"} == \
               {k: v for k, v in read_metadata(fp32).items() if k != "provenance"}
        out = session.run(x, gain_vector(model, {0: 2.0}))[0]
        assert out.shape == ref.shape and np.isfinite(out).all()
        scale = np.abs(ref).max()
        assert np.abs(out - ref).max() < (0.01 if variant == "fp16" else 0.2) * scale, variant
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert read_metadata(tmp_path / "m8.onnx")["provenance"]["int8_calibration"]["images"] == 8
    branches = to_int8(fp32, tmp_path / "b8.onnx", calibration, float_trunk=True)

    def int8_weights(path):
        return sum(t.data_type == onnx.TensorProto.INT8 for t in onnx.load(str(path)).graph.initializer)
    assert int8_weights(tmp_path / "m8.onnx") > int8_weights(branches) > 0  # float_trunk: the trunk stays float


def test_read_metadata_refuses_foreign_files(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="x.onnx"):
        read_metadata(tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "missing.onnx")


# ---------------------------------------------------------------- the packaged default model, real photos
@pytest.fixture(scope="module")
def default_model():
    return load_seqpar("default")


@pytest.fixture(scope="module")
def photos(default_model, shared_data):
    from vision.data import eval_transform, list_labelled_images, load_rgb

    transform = eval_transform(default_model.data_config())
    paths = [p.path for p in list_labelled_images(shared_data / "imagenet-samples")[::200]]
    return torch.stack([transform(load_rgb(p)) for p in paths])


def test_default_model_and_cat_cutout_match_torch_on_real_photos(default_model, photos, tmp_path):
    group = next(n["name"] for n in default_model.config.hierarchy["children"] if 281 in n["children"])
    full = export_classes(default_model, None, tmp_path / "full.onnx")
    _check(default_model, full, photos)
    _check(default_model, full, photos[:1])  # traced at batch 2: the branch chunks must not follow the batch
    _check(default_model, full, photos, {group: 2.0, 281: 16.0, 282: 0.5})
    cut = default_model.cutout(CATS, share_trunk=True)
    plain = export_classes(default_model, CATS, tmp_path / "cat_plain.onnx", gains=False)
    _check(cut, plain, photos)
    cat = export_classes(default_model, CATS, tmp_path / "cat.onnx")
    _check(cut, cat, photos, {group: 2.0, 281: 16.0})
    assert read_metadata(cat)["class_names"] == list(cut.config.class_names)
    assert cat.stat().st_size < 0.3 * full.stat().st_size


# ---------------------------------------------------------------- CLIs
def test_vision_export_cli_writes_a_cutout(tmp_path, capsys):
    from vision.export import cli

    model = tiny_model(image_size=64)
    model.save_pretrained(tmp_path / "m")
    code = cli(["--model", str(tmp_path / "m"), "--classes", "1,4-5", "--out", str(tmp_path / "c.onnx")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["classes"] == 3 and out["bytes"] == (tmp_path / "c.onnx").stat().st_size
    assert read_metadata(tmp_path / "c.onnx")["class_ids"] == [1, 4, 5]
    _check(model.cutout([1, 4, 5]), tmp_path / "c.onnx", _inputs(model, 2), {4: 3.0})


@pytest.mark.parametrize("argv, message", [
    (["--classes", "4-2"], "--classes"),
    (["--classes", "99"], "not classes of this model"),
    (["--variant", "int8"], "needs --calibration-images"),
])
def test_vision_export_cli_rejects_bad_input(argv, message, tmp_path, capsys):
    from vision.export import cli

    tiny_model().save_pretrained(tmp_path / "m")
    assert cli(["--model", str(tmp_path / "m"), "--out", str(tmp_path / "c.onnx"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.onnx").exists()


def test_crossmodal_export_cli_exports_the_cues_cutout(tmp_path, capsys):
    from crossmodal.export import cli

    assert cli(["--text", "meow", "--out", str(tmp_path / "cat.onnx")]) == 0
    out = json.loads(capsys.readouterr().out)
    metadata = read_metadata(tmp_path / "cat.onnx")
    assert out["classes"] == metadata["class_ids"] and set(CATS) <= set(out["classes"])
    assert metadata["provenance"]["guide"]["cue"] == "meow"
    assert [k for k, _ in metadata["provenance"]["guide"]["gains"]] == [k for k, _ in out["gains"]]
