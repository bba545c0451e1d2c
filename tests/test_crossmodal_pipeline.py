"""End to end: text and audio cues (real MiniLM mapper, a small AST saved here), the CLI, evaluation, calibration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from audio import AudioTagger, TextCue
from audio.labels import audioset_labels
from crossmodal import MODES, GuidedClassifier, run
from crossmodal import calibrate as calibrate_cli
from crossmodal import evaluate as evaluate_cli
from crossmodal.evaluation import build_items, evaluate, label_cue
from tests.vision_helpers import tiny_model
from vision.data import list_labelled_images

torch.set_num_threads(1)
CLASS_IDS = (281, 282, 283, 284, 285, 151, 152)  # cats and two dog breeds
WNIDS = {281: "n02123045", 282: "n02123159", 283: "n02123394", 284: "n02123597", 285: "n02124075",
         151: "n02085620", 152: "n02085782"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("seqpar")
    tiny_model(image_size=64, class_ids=CLASS_IDS).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two generated photos per class, named like ../shared/data/imagenet-samples ({wnid}_{name})."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for cid, wnid in WNIDS.items():
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40 + k, 50, 3), dtype=np.uint8)).save(folder / f"{wnid}_{k}.png")
    return folder


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory):
    """A small AST with the 527 AudioSet labels, saved as a transformers checkpoint."""
    directory = tmp_path_factory.mktemp("ast")
    labels = [name for _, name in audioset_labels()]
    torch.manual_seed(0)
    model = ASTForAudioClassification(ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=64,
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}))
    with torch.no_grad():
        model.classifier.dense.weight.normal_(std=0.5)
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=64).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def clf(model_dir, ast_dir):
    return GuidedClassifier.from_pretrained(model_dir, audio_model=ast_dir)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "noise.wav"
    sf.write(path, np.random.default_rng(1).uniform(-0.5, 0.5, 16_000).astype(np.float32), 16_000)
    return path


def test_text_guide_goes_through_the_mapper(clf):
    guide = clf.guide(text="meow")
    mapped = clf.cues.mapper.map(TextCue("meow"))
    gains = mapped.class_gains()
    # the tiny tree: a = {281, 282, 283}, b = {284, c}, c = {285, 151}: only node "a" is fully cued
    assert guide == mapped.with_gains({"a": min(gains[c] for c in (281, 282, 283))})
    assert guide.classes == (281, 282, 283, 284, 285) and guide.source == "text" and guide.cue == (("meow", 1.0),)
    assert "b" not in guide.gain_map() and "c" not in guide.gain_map()
    result = clf.predict(np.zeros((30, 30, 3), np.uint8), guide, "cutout+attend")
    assert {p.class_id for p in result.predictions} == set(guide.classes) and result.fallback is None
    assert dict(result.gains)["a"] == guide.gain_map()["a"]
    with pytest.raises(ValueError, match="exactly one of text= or audio="):
        clf.guide()


def test_audio_guides_from_files_waveforms_and_streams(clf, ast_dir, wav):
    tagger = AudioTagger.from_pretrained(ast_dir)
    k = clf.cues.mapper.config.tag_top_k  # the tagger is asked for as many labels as the mapper decides from
    expected = tagger.cue(wav, top_k=k)
    guide = clf.guide(audio=wav)
    assert (guide.source, guide.cue) == ("audio", expected.labels)
    mapped = clf.cues.mapper.map(expected)
    assert guide == mapped.with_gains(clf.model.node_gains(mapped.class_gains()))
    wave, rate = sf.read(wav, dtype="float32")
    assert clf.guide(audio=(wave, rate)).cue == tagger.cue(wave, sampling_rate=rate, top_k=k).labels
    stream = clf.cue_stream(rate, window_seconds=1.0, interval_seconds=0.5)
    first = stream.push(wave[:8000])
    assert first is not None and first.cue == tagger.cue(wave[:8000], sampling_rate=rate, top_k=k).labels


def run_cli(module, argv, capsys):
    code = module.cli([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_schema_and_modes(model_dir, images, capsys):
    image = next(images.iterdir())
    code, out, err = run_cli(run, ["--image", image, "--text", "find the cat", "--model", model_dir, "--json",
                                   "--top-k", "3"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"image", "model", "cue", "predictions", "mode", "requested_mode", "fallback", "cost",
                         "guide", "gains", "timings", "cutout_cached",
                         "cue_agreement"}
    assert data["mode"] == "cutout+attend" and data["cue"] == {"source": "text",
                                                               "labels": [{"label": "find the cat", "score": 1.0}]}
    assert len(data["predictions"]) == 3 and {p["class_id"] for p in data["predictions"]} <= {281, 282, 283, 284, 285}
    assert {"load_model_ms", "load_mapper_ms", "cue_mapping_ms", "trunk_ms", "branches_ms"} <= set(data["timings"])
    code, out, _ = run_cli(run, ["--image", image, "--model", model_dir, "--json"], capsys)
    assert code == 0 and json.loads(out)["mode"] == "unguided" and json.loads(out)["guide"] is None
    code, out, _ = run_cli(run, ["--image", image, "--text", "meow", "--model", model_dir, "--mode", "cutout"], capsys)
    assert code == 0 and "mode: cutout" in out and "fewer GMACs" in out and "meow (1.00)" in out


def test_text_report_stays_short_for_a_very_long_cue(model_dir, images, capsys):
    cue = "a cat that says meow " * 250  # 5,250 characters
    code, out, err = run_cli(run, ["--image", next(images.iterdir()), "--text", cue, "--model", model_dir], capsys)
    assert code == 0, err
    assert len(out) < 4_000 and max(map(len, out.splitlines())) <= 300, out


def test_cli_exit_codes_for_bad_input_and_internal_errors(model_dir, images, wav, tmp_path, capsys, monkeypatch):
    image = next(images.iterdir())
    code, _, err = run_cli(run, ["--image", tmp_path / "none.jpg", "--model", model_dir], capsys)
    assert code == 2 and err == f"error: --image {tmp_path / 'none.jpg'}: file not found\n"
    code, _, err = run_cli(run, ["--image", image, "--model", tmp_path / "nomodel"], capsys)
    assert code == 2 and "model directory" in err and "not found" in err
    code, _, err = run_cli(run, ["--image", image, "--model", model_dir, "--top-k", "0"], capsys)
    assert code == 2 and "--top-k 0: expected a positive number" in err
    code, _, err = run_cli(run, ["--image", image, "--model", model_dir, "--audio", tmp_path / "x.wav"], capsys)
    assert code == 2 and err == f"error: --audio {tmp_path / 'x.wav'}: file not found\n"
    code, _, err = run_cli(run, ["--image", image, "--model", model_dir, "--audio", wav,
                                 "--audio-model", "crossmodal-tests/no-such-audio-model"], capsys)
    assert code == 2 and err.count("\n") == 1 and "'yamnet' tagger works offline" in err and "--audio-model DIR" in err
    with pytest.raises(SystemExit) as exit_info:
        run.cli(["--image", str(image), "--mode", "everything"])
    assert exit_info.value.code == 2 and "invalid choice: 'everything'" in capsys.readouterr().err
    monkeypatch.setattr(GuidedClassifier, "predict", lambda *a, **k: 1 / 0)
    code, _, err = run_cli(run, ["--image", image, "--model", model_dir], capsys)
    assert code == 1 and err == "internal error: ZeroDivisionError: division by zero\n"


def test_label_cues():
    assert label_cue(281, "class") == "tabby"
    assert label_cue(281, "superclass") == "domestic cat"
    with pytest.raises(ValueError, match="cue kind must be one of"):
        label_cue(281, "genus")


def test_evaluation_report_is_consistent(clf, model_dir, images, tmp_path):
    args = evaluate_cli.get_args_parser().parse_args(
        ["--images", str(images), "--cue-from-label", "class", "--model", str(model_dir), "--out", str(tmp_path),
         "--gain-sweep", "1,3", "--no-progress"])
    result = evaluate_cli.main(args)
    rows = list(csv.DictReader(open(result["outputs"]["per_image"])))
    assert len(rows) == 14 * 5 and {r["mode"] for r in rows} == {"unguided", "attend", "cutout", "cutout+attend", "mask"}
    for summary in result["summary"]:
        sel = [r for r in rows if r["mode"] == summary["mode"]]
        assert summary["top1"] == pytest.approx(sum(r["top1"] == "True" for r in sel) / 14)
        assert summary["fallback_rate"] == pytest.approx(sum(bool(r["fallback"]) for r in sel) / 14)
    for r in rows:
        if r["mode"] == "cutout":  # a guide of exactly the true class leaves one output: always right
            kept = clf.resolve(clf.guide(text=r["cue"]), "cutout")[2]
            if kept == (int(r["class_id"]),):
                assert r["top1"] == "True" and float(r["gmacs"]) < clf.full_cost.gmacs
            elif kept and int(r["class_id"]) not in kept:
                assert r["top1"] == "False"
    assert [(s["gain"], s["mode"]) for s in result["gain_sweep"]] == [(1.0, "attend"), (3.0, "attend"),
                                                                      (1.0, "cutout+attend"), (3.0, "cutout+attend")]
    for name in ("markdown", "json", "per_class", "accuracy_vs_gmacs", "gain_sweep", "reliability_cutout+attend"):
        assert (tmp_path / result["outputs"][name].split("/")[-1]).stat().st_size > 0
    assert "| cutout |" in (tmp_path / "report.md").read_text()


def test_wrong_cues_are_other_classes(images):
    found = list_labelled_images(images)
    items = build_items(found, cue_from_label="class", wrong_cue_rate=1.0, classes=CLASS_IDS)
    assert all(i.wrong_cue and i.cue != label_cue(i.image.class_id, "class") for i in items)
    assert [i.cue for i in build_items(found, cue_from_label="class")] == [label_cue(i.class_id, "class") for i in found]
    with pytest.raises(ValueError, match="wrong_cue_rate must be in"):
        build_items(found, cue_from_label="class", wrong_cue_rate=1.5)


def test_cue_csv_with_text_and_audio(clf, images, wav, tmp_path):
    names = sorted(p.name for p in images.iterdir())
    table = tmp_path / "cues.csv"
    table.write_text(f"image,cue\n{names[0]},meow\n{names[1]},{wav}\n")
    items = build_items(list_labelled_images(images), cue_csv=table)
    assert [i.cue for i in items[:3]] == ["meow", str(wav), None]
    report = evaluate(clf, items[:3], modes=["cutout"], progress=False)
    assert report.cues["distinct_cues"] == 2 and report.summary[0]["images"] == 3
    (tmp_path / "bad.csv").write_text("image,cue\nx.png\n")
    with pytest.raises(ValueError, match="row 2: expected 'image,cue_audio_or_text'"):
        build_items([], cue_csv=tmp_path / "bad.csv")


def test_calibration_writes_the_settings_the_classifier_uses(model_dir, images, tmp_path):
    out = tmp_path / "calibrated"
    args = calibrate_cli.get_args_parser().parse_args(
        ["--images", str(images), "--cue-from-label", "superclass", "--model", str(model_dir), "--out", str(out),
         "--grid", "1,4", "--no-progress"])
    found = calibrate_cli.main(args)
    assert len(found["level_gains"]) == 3 and found["calibrated_top1"] >= found["baseline_top1"]
    assert len(found["trials"]) == 1 + 3 * 2
    assert found["calibrated_top1"] == max(t["top1"] for t in found["trials"])
    assert set(found["temperatures"]) == set(MODES) and found["misleading_cues"] == 14
    assert all(0 <= f["ece_after"] <= 1 and 0 <= f["ece_before"] <= 1 for f in found["figures"].values())
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()  # unchanged
    reloaded = GuidedClassifier.from_pretrained(out)
    calibration = reloaded.model.config.calibration
    assert list(reloaded.level_gains or [None] * 3) == found["level_gains"]
    assert calibration.temperatures == found["temperatures"]
    assert calibration.agreement == (found["agreement"]["scale"], found["agreement"]["offset"])
    assert reloaded.model.config.metadata["calibration_run"]["images"] == 14
    with pytest.raises(ValueError, match="--model default is the packaged model: give --out"):
        calibrate_cli.main(calibrate_cli.get_args_parser().parse_args(
            ["--images", str(images), "--cue-from-label", "class", "--model", "default"]))


def test_fit_logistic_recovers_a_known_map():
    from crossmodal.calibration import fit_logistic

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=generator, dtype=torch.float64) * 3
    y = (torch.rand(20_000, generator=generator, dtype=torch.float64) < torch.sigmoid(0.8 * x - 1.5)).double()
    scale, offset = fit_logistic(x, y)
    assert scale == pytest.approx(0.8, abs=0.05) and offset == pytest.approx(-1.5, abs=0.08)


def test_a_sound_cue_works_offline_by_default_on_a_real_clip(shared_data, tmp_path, capsys):
    """The headline command, `crossmodal.run --image photo --audio meow.wav`, with no --audio-model: YAMNet."""
    pytest.importorskip("skimage")
    photo = Path(pytest.importorskip("skimage").__file__).parent / "data" / "chelsea.png"
    code, out, err = run_cli(run, ["--image", photo, "--audio", shared_data / "audio" / "esc50" / "cat.wav",
                                   "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["cue"]["source"] == "audio" and data["guide"]["confident"]
    assert set(data["guide"]["classes"]) & {281, 282, 283, 284, 285} and data["mode"] == "cutout+attend"
    assert data["predictions"][0]["class_id"] in {281, 282, 283, 284, 285}  # the photo is a cat
    assert "load_audio_model_ms" in data["timings"] and "audio_tagging_ms" in data["timings"]


def test_silence_gives_an_abstaining_guide_and_streams_check_their_options(clf, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16_000, np.float32), 16_000)
    model = GuidedClassifier(clf.model)  # the default audio model: the packaged YAMNet
    guide = model.guide(audio=silent)
    assert not guide.confident and guide.source == "audio" and "digital silence" in guide.explain()
    assert guide.reason == "silent"
    result = model.predict(np.zeros((30, 30, 3), np.uint8), guide, "cutout")
    assert result.mode == "unguided" and result.fallback == "the guide is not confident"
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        model.cue_stream(16_000, top_k=0)
    with pytest.raises(ValueError, match="window_seconds and interval_seconds must be > 0"):
        model.cue_stream(16_000, window_seconds=-1)
    from crossmodal.cues import CueGuides

    missing = GuidedClassifier(clf.model, cues=CueGuides(clf.model, audio_model=tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError):
        missing.cue_stream(16_000)  # the audio model loads when the stream is made, not at its first chunk
    stream = model.cue_stream(np.int64(16_000), window_seconds=1.0, interval_seconds=0.5)
    assert stream.push(np.zeros(8000, np.float32)).confident is False  # silence: an abstaining guide


def test_cli_bad_files_exit_2_with_one_line_naming_the_file(model_dir, images, tmp_path, capsys):
    import shutil

    image = next(images.iterdir())
    broken = tmp_path / "broken-model"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, out, err = run_cli(run, ["--image", image, "--model", broken], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and str(weights) in err
    bomb = tmp_path / "bomb.png"
    from tests.test_crossmodal_frames import _png_with_size

    _png_with_size(bomb, 30_000, 30_000)
    code, _, err = run_cli(run, ["--image", bomb, "--model", model_dir, "--json"], capsys)
    assert code == 2 and err.count("\n") == 1 and "bomb.png" in err and "pixels" in err


def test_cli_never_prints_nan_probabilities(model_dir, images, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    nan_model = tmp_path / "nan-model"
    shutil.copytree(model_dir, nan_model)
    state = load_file(nan_model / "model.safetensors")
    state["levels.1.head.bias"] = torch.full_like(state["levels.1.head.bias"], float("inf"))
    save_file(state, str(nan_model / "model.safetensors"))
    code, out, err = run_cli(run, ["--image", next(images.iterdir()), "--model", nan_model, "--json"], capsys)
    assert code == 2 and out == "" and "NaN or infinite" in err and "nan%" not in err
