"""Evaluation under torchrun (2 gloo processes) gives the single-process report; interrupted runs resume exactly."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vision.evaluate as vision_cli
from crossmodal import evaluate as crossmodal_cli
from crossmodal.evaluation import MEASURED
from tests.vision_helpers import synthetic_model, tiny_model
from vision.data.synthetic import generate
from vision.eval import evaluate

REPO = Path(__file__).resolve().parents[1]
VISION_ARGS = {"subsets": ["lower:0-4", "upper:5-9"], "gains": [1.0, 2.5], "batch_size": 4, "workers": 0}
WNIDS = {281: "n02123045", 282: "n02123159", 283: "n02123394", 284: "n02123597", 285: "n02124075",
         151: "n02085620", 152: "n02085782"}


@pytest.fixture(scope="module")
def vision_setup(tmp_path_factory):
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): the same kernels, the same bits
    root = tmp_path_factory.mktemp("dist_vision")
    generate(root / "data", train_per_class=1, val_per_class=3, size=32, seed=3)  # 30 images: 8 batches of 4
    synthetic_model().save_pretrained(root / "model")
    evaluate(root / "model", root / "data", out=root / "single", **VISION_ARGS)
    return root


def _worker(rank: int, port: int, cli, argv: list[str]) -> None:
    """One of two processes with the environment torchrun gives its workers."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    code = cli([*argv, "--no-progress"])
    if code != 0:
        raise RuntimeError(f"rank {rank} exited with {code}")


def two_processes(cli, argv: list[str]) -> None:
    """``cli(argv)`` in 2 forked processes joined like torchrun's (gloo): no second start-up of Python and torch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(_worker, (port, cli, argv), nprocs=2, start_method="fork")


def torchrun(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", module, *args, "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def journal_indices(path: Path) -> list[int]:
    """The image indices of a journal's records, in file order (the first line is the header)."""
    return [json.loads(line)["index"] for line in path.read_text().splitlines()[1:]]


def vision_cli_args(root: Path, out: Path) -> list[str]:
    return ["--model", str(root / "model"), "--data", str(root / "data"), "--subsets", *VISION_ARGS["subsets"],
            "--gains", "1", "2.5", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out)]


def test_vision_two_processes_interrupted_and_resumed_give_the_single_process_results(vision_setup, tmp_path, capfd):
    out = tmp_path / "two"
    two_processes(vision_cli.cli, [*vision_cli_args(vision_setup, out), "--stop-after", "5"])
    assert capfd.readouterr().out.count("stopped after --stop-after 5") == 1  # rank 0 prints, rank 1 does not
    assert not (out / "results.json").exists()
    # batches of 4, dealt out in turn: rank 0 did batches 0 and 2, rank 1 batches 1 and 3 (each stops at >= 5)
    assert journal_indices(out / "per_image.0-of-2.jsonl") == [0, 1, 2, 3, 8, 9, 10, 11]
    assert journal_indices(out / "per_image.1-of-2.jsonl") == [4, 5, 6, 7, 12, 13, 14, 15]
    one = tmp_path / "one"
    shutil.copytree(out, one)

    resumed = torchrun("vision.evaluate", *vision_cli_args(vision_setup, out), "--resume", cwd=tmp_path)
    single = (vision_setup / "single" / "results.json").read_bytes()
    assert (out / "results.json").read_bytes() == single
    assert resumed.stdout.count('"accuracy"') == 1
    for name in ("per_class.csv", "subsets.csv", "gains.csv", "report.md"):
        assert (out / name).read_bytes() == (vision_setup / "single" / name).read_bytes()
    # the journal of 2 processes resumes in 1 process too: units never depend on the number of processes
    report = evaluate(vision_setup / "model", vision_setup / "data", out=one, resume=True, **VISION_ARGS)
    assert (one / "results.json").read_bytes() == single and report.accuracy.images == 30


def test_vision_resume_after_a_torn_line_and_a_foreign_journal(vision_setup, tmp_path):
    out = tmp_path / "r"
    assert evaluate(vision_setup / "model", vision_setup / "data", out=out, stop_after=9, **VISION_ARGS) is None
    journal = out / "per_image.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 12 and [json.loads(x)["index"] for x in lines[1:]] == list(range(12))
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # killed while writing image 11
    evaluate(vision_setup / "model", vision_setup / "data", out=out, resume=True, **VISION_ARGS)
    assert (out / "results.json").read_bytes() == (vision_setup / "single" / "results.json").read_bytes()
    assert journal_indices(journal) == list(range(30))  # the torn line is gone, image 11 computed once more, nothing twice
    with pytest.raises(ValueError, match="per_image.jsonl was written by a different evaluation"):
        evaluate(vision_setup / "model", vision_setup / "data", out=out, resume=True, **{**VISION_ARGS, "gains": [3.0]})
    with pytest.raises(ValueError, match="resuming needs an output folder"):
        evaluate(vision_setup / "model", vision_setup / "data", resume=True, **VISION_ARGS)


@pytest.fixture(scope="module")
def crossmodal_setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dist_crossmodal")
    tiny_model(image_size=64, class_ids=tuple(WNIDS)).save_pretrained(root / "model")
    rng = np.random.default_rng(5)
    (root / "photos").mkdir()
    for wnid in WNIDS.values():
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40 + k, 50, 3), dtype=np.uint8)).save(root / "photos" / f"{wnid}_{k}.png")
    return root


def crossmodal_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--images", str(root / "photos"), "--model", str(root / "model"), "--cue-from-label", "class", "--wrong-cue-rate",
            "0.4", "--gain-sweep", "1,3", "--min-agreement", "0.3", "--seed", "1", "--out", str(out), *extra]


def computed(value):
    """The report without what a run measures (timings, per-process cache counters)."""
    if isinstance(value, dict):
        return {k: computed(v) for k, v in value.items() if k not in MEASURED}
    if isinstance(value, list):
        return [computed(v) for v in value]
    return value


def crossmodal_outputs(out: Path) -> dict:
    tables = {name: computed(list(csv.DictReader((out / name).read_text().splitlines())))
              for name in ("per_image.csv", "per_class.csv")}
    return {"summary": computed(json.loads((out / "summary.json").read_text())), **tables}


def test_crossmodal_two_processes_and_resume_give_the_single_process_report(crossmodal_setup, tmp_path):
    parser = crossmodal_cli.get_args_parser()
    single = crossmodal_cli.main(parser.parse_args(crossmodal_args(crossmodal_setup, tmp_path / "single",
                                                                   "--no-progress")))
    expected = crossmodal_outputs(tmp_path / "single")
    assert single["cues"]["wrong_cues"] > 0 and single["cues"]["agreement_auroc"] is not None
    assert len(expected["per_image.csv"]) == 14 * 5 and expected["summary"]["gain_sweep"]

    two_processes(crossmodal_cli.cli, crossmodal_args(crossmodal_setup, tmp_path / "two"))
    assert crossmodal_outputs(tmp_path / "two") == expected
    assert journal_indices(tmp_path / "two" / "per_image.1-of-2.jsonl") == list(range(1, 14, 2))  # images dealt out
    two_cache = json.loads((tmp_path / "two" / "summary.json").read_text())["cues"]["cutout_cache"]
    assert two_cache["hits"] + two_cache["misses"] == single["cues"]["cutout_cache"]["hits"] + \
        single["cues"]["cutout_cache"]["misses"]  # every lookup counted once, whichever process made it

    out = tmp_path / "resumed"
    stopped = crossmodal_cli.main(parser.parse_args(crossmodal_args(crossmodal_setup, out, "--stop-after", "6",
                                                                    "--no-progress")))
    assert stopped == {"stopped": True, "out": str(out)} and not (out / "summary.json").exists()
    journal = out / "per_image.jsonl"
    journal.write_text(journal.read_text()[:-10])  # killed while writing image 5
    crossmodal_cli.main(parser.parse_args(crossmodal_args(crossmodal_setup, out, "--resume", "--no-progress")))
    assert crossmodal_outputs(out) == expected
    assert journal_indices(journal) == list(range(14))


def test_photos_option_evaluates_one_side_of_the_photo_split(crossmodal_setup, tmp_path):
    parser = crossmodal_cli.get_args_parser()
    argv = ["--images", str(crossmodal_setup / "photos"), "--model", str(crossmodal_setup / "model"),
            "--modes", "unguided", "--out", str(tmp_path), "--no-progress"]
    held_out = crossmodal_cli.main(parser.parse_args([*argv, "--photos", "held-out"]))
    assert held_out["summary"][0]["images"] == 2 and "held-out photos (2 images)" in held_out["title"]
    rows = list(csv.DictReader((tmp_path / "per_image.csv").read_text().splitlines()))
    assert sorted(r["image"] for r in rows) == ["n02085620_1.png", "n02123045_1.png"]  # sha256 of the name
    build = crossmodal_cli.main(parser.parse_args([*argv, "--photos", "build"]))
    assert build["summary"][0]["images"] == 12
