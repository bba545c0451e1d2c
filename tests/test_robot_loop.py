"""examples/robot_loop.py: the run step imports no torch and answers as the PyTorch pipeline does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "robot_loop.py"
FORBIDDEN = ("torch", "torchvision", "torchaudio", "timm", "transformers", "sentence_transformers", "soxr")
# The run step in a fresh interpreter: its result and the heavy modules it imported (none expected).
RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("robot_loop", sys.argv[1])
loop = importlib.util.module_from_spec(spec); spec.loader.exec_module(loop)
result = loop.main(loop.get_args_parser().parse_args(sys.argv[2:]))
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"result": result, "forbidden": forbidden}))
""".replace("FORBIDDEN", repr(FORBIDDEN))
CASES = (("cat.wav", "n02123045_tabby.JPEG"), ("dog.wav", "n02099712_Labrador_retriever.JPEG"))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def cases(shared_data):
    pairs = [(shared_data / "audio" / "esc50" / a, shared_data / "imagenet-samples" / i) for a, i in CASES]
    if not all(a.is_file() and i.is_file() for a, i in pairs):
        pytest.skip("shared cat/dog clips or photos not found")
    return pairs


@pytest.fixture(scope="module")
def prepared(cases, tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("robot")
    command = [sys.executable, str(SCRIPT), "prepare", "--out-dir", str(out), "--only-clips", "--cache-dir",
               str(cache_dir), "--clips", *(str(a) for a, _ in cases)]
    subprocess.run(command, check=True, env=_env(), capture_output=True, timeout=300)
    return out


def run_loop(directory: Path, audio: Path, image: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", RUNNER, str(SCRIPT), "run", "--dir", str(directory), "--audio",
                           str(audio), "--image", str(image)], env=_env(), capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def test_robot_loop_is_torch_free_and_answers_as_the_library(prepared, cases, cache_dir):
    from crossmodal import GuidedClassifier
    from crossmodal.cues import CueGuides
    from mappings import CueMapper
    from vision import load_seqpar

    model = load_seqpar("default")
    clf = GuidedClassifier(model, cues=CueGuides(model, mapper=CueMapper.default(cache_dir=str(cache_dir))))
    for audio, image in cases:
        out = run_loop(prepared, audio, image)
        assert out["forbidden"] == []
        robot = out["result"]
        guide = clf.guide(audio=audio)
        expected = clf.predict(image, guide, mode="cutout", top_k=5)
        assert robot["network"] == "cutout" and expected.mode == "cutout"
        assert tuple(robot["guide"]["classes"]) == tuple(guide.classes)
        got = [(p["class_id"], p["prob"]) for p in robot["predictions"]]
        want = [(p.class_id, p.prob) for p in expected.predictions]
        assert got[0][0] == want[0][0], audio.name
        assert [c for c, _ in got] == [c for c, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-4)


def test_missing_directory_is_bad_input(tmp_path, cases):
    done = subprocess.run([sys.executable, str(SCRIPT), "run", "--dir", str(tmp_path), "--audio",
                           str(cases[0][0]), "--image", str(cases[0][1])], env=_env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "manifest.json not found" in done.stderr


def test_class_set_without_a_cutout_file_runs_the_full_model_with_the_same_answer(prepared, cases, tmp_path):
    manifest = json.loads((prepared / "manifest.json").read_text())
    absolute = {key: str(prepared / manifest[key]) for key in ("tagger", "table", "full")}
    (tmp_path / "manifest.json").write_text(json.dumps({**absolute, "cutouts": {}}))
    audio, image = cases[0]
    cutout, full = run_loop(prepared, audio, image)["result"], run_loop(tmp_path, audio, image)["result"]
    assert (cutout["network"], full["network"]) == ("cutout", "full")
    assert full["guide"] == cutout["guide"]
    assert [p["class_id"] for p in full["predictions"]] == [p["class_id"] for p in cutout["predictions"]]
    assert [p["prob"] for p in full["predictions"]] == pytest.approx([p["prob"] for p in cutout["predictions"]],
                                                                     abs=1e-4)
