"""vision.evaluate contracts: accuracy bookkeeping, exact cutouts, gain identities, outputs, errors."""

import csv
import json
import shutil

import pytest
import torch

from tests.vision_helpers import synthetic_model
from vision.baseline import TimmClassifier
from vision.data.folder import class_set
from vision.data.synthetic import class_folder, generate
from vision.eval import evaluate
from vision.evaluate import get_args_parser, main

FOLDERS = [class_folder(c) for c in range(10)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    generate(root / "data", train_per_class=1, val_per_class=3, size=32, seed=2)
    synthetic_model().save_pretrained(root / "model")
    return root


def test_report_accuracy_cutouts_gains_and_files(setup, tmp_path):
    subsets_file = tmp_path / "subsets.yaml"
    subsets_file.write_text("named_upper: [" + ", ".join(FOLDERS[5:]) + "]\n")
    rep = evaluate(setup / "model", setup / "data", subsets=["lower:0-4", "upper:5-9"], subsets_file=str(subsets_file),
                   gains=[1.0, 0.5, 3.0], workers=0, out=tmp_path / "out")
    assert rep.accuracy.images == 30 and rep.accuracy.top5 is None
    assert sum(c["images"] for c in rep.per_class) == 30
    assert sum(c["top1"] * c["images"] for c in rep.per_class) / 30 == pytest.approx(rep.accuracy.top1)

    by_name = {s.name: s for s in rep.subsets}
    lower, upper = by_name["lower"], by_name["upper"]
    assert lower.positions == [0, 1, 2, 3, 4] and lower.images == 15
    assert by_name["named_upper"].to_dict() == {**upper.to_dict(), "name": "named_upper"}
    for s in (lower, upper):
        assert s.cutout_max_logit_diff < 1e-4  # the cutout computes the full model's logits of its classes
        assert s.cutout_params < s.full_params and s.cutout_gmacs < s.full_gmacs
        assert s.params_reduction_pct == pytest.approx(100 * (s.cutout_params - s.full_params) / s.full_params)
        assert s.cutout_top1 >= s.full_top1  # fewer competitors, identical logits

    gs = rep.gain_sweep
    assert gs.gains == [1.0, 0.5, 3.0] and gs.top1[0] == rep.accuracy.top1  # gain 1 is the identity
    assert gs.best_top1 == max(gs.top1) and gs.top1[2] >= gs.top1[1]

    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(rep.to_dict()))
    rows = list(csv.DictReader(open(out / "subsets.csv")))
    assert [r["name"] for r in rows] == ["lower", "upper", "named_upper"] and rows[0]["positions"] == "0 1 2 3 4"
    assert len(list(csv.DictReader(open(out / "per_class.csv")))) == 10
    assert (out / "gain_curve.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "| lower | 15 |" in md and "Best gain" in md


def test_baseline_models_and_cli(setup, tmp_path):
    baseline = TimmClassifier("test_resnet", [0, 1, 2, 3, 4], FOLDERS[:5])
    baseline.save_pretrained(tmp_path / "base")
    args = get_args_parser().parse_args(["--model", str(setup / "model"), "--data", str(setup / "data"),
                                         "--subsets", "lower:0-4", "--baseline", f"lower={tmp_path / 'base'}",
                                         "--workers", "0"])
    result = main(args)
    row = result["subsets"][0]
    assert row["baseline_params"] == sum(p.numel() for p in baseline.parameters()) and row["baseline_top1"] is not None
    wrong = get_args_parser().parse_args(["--model", str(setup / "model"), "--data", str(setup / "data"),
                                          "--subsets", "upper:5-9", "--baseline", f"upper={tmp_path / 'base'}",
                                          "--workers", "0"])
    with pytest.raises(ValueError, match="baseline for subset 'upper' has classes"):
        main(wrong)
    with pytest.raises(ValueError, match="class folders .* that the model does not know: 5_triangle"):
        evaluate(tmp_path / "base", setup / "data", workers=0)
    TimmClassifier("test_resnet", list(range(10)), FOLDERS).save_pretrained(tmp_path / "full")
    with pytest.raises(ValueError, match="cutout evaluation needs a SeqPar model; test_resnet is a plain timm baseline"):
        evaluate(tmp_path / "full", setup / "data", subsets=["lower:0-1"], workers=0)


def test_bad_inputs_fail_clearly(setup, tmp_path):
    with pytest.raises(ValueError, match="must look like name:0-4"):
        evaluate(setup / "model", setup / "data", subsets=["lower"], workers=0)
    with pytest.raises(ValueError, match="not an output position"):
        evaluate(setup / "model", setup / "data", subsets=["x:3-12"], workers=0)
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        evaluate(tmp_path, setup / "data", workers=0)
    data = tmp_path / "data"
    shutil.copytree(setup / "data" / "val", data / "val")
    (data / "val" / "n01440764").mkdir()
    with pytest.raises(ValueError, match="class folders .* that the model does not know: n01440764"):
        evaluate(setup / "model", data, workers=0)


def test_wnid_folders_match_imagenet_class_ids(tmp_path):
    """A model with ImageNet class ids evaluates wnid folders by id, whatever subset it has."""
    cs = class_set(["n01440764", "n02123045"])
    model = TimmClassifier("test_resnet", list(cs.class_ids), list(cs.class_names))
    model.save_pretrained(tmp_path / "m")
    from PIL import Image

    for wnid in ("n02123045",):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "val" / wnid / "a.png")
    rep = evaluate(tmp_path / "m", tmp_path, input_size=32, workers=0)
    assert rep.per_class[1]["images"] == 1 and rep.per_class[0]["images"] == 0 and rep.per_class[0]["top1"] is None
