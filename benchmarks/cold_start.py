"""Cold start of ``python -m crossmodal.run``: wall time of fresh processes and where it goes.

    HF_HUB_OFFLINE=1 python -m benchmarks.cold_start [--runs 5] [--first-boot-runs 5]

Each scenario starts ``--runs`` new processes (``python -m crossmodal.run --json``) one after the other and
reports medians: the wall time seen from outside, the stages the CLI times itself (model load, mapper
load, audio model load + tagging, cue mapping, predict) and the rest (interpreter start-up and imports).
Scenarios: a curated cue (mappings/overrides.yaml), a WordNet cue, a sound (YAMNet on a shared clip: the
AudioSet ontology path), free text that needs MiniLM with a warm embedding cache, and the same on a first
boot (``$CROSSMODAL_CACHE`` an empty folder each run). One more untimed run per scenario, under
``python -X importtime``, tells which of the packages that cost seconds to import were imported (none should be:
the default model's trunk, its preprocessing and its MiniLM encoder run without timm, torchvision and
sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import add_json_argument, cell, machine, machine_line, markdown_table, write_json
from xmcommon.cli import exit_process, run_cli

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = DATA / "imagenet-samples" / "n02123394_Persian_cat.JPEG"
CLIP = DATA / "audio" / "esc50" / "cat.wav"
STAGES = (("model load", ("load_model_ms",)), ("mapper load", ("load_mapper_ms",)),
          ("audio model + tagging", ("load_audio_model_ms", "audio_tagging_ms")), ("cue mapping", ("cue_mapping_ms",)),
          ("predict", ("total_ms",)))
WATCHED = ("sentence_transformers", "transformers", "timm", "torchvision", "torch._dynamo", "sympy")


@dataclass(frozen=True)
class Scenario:
    name: str
    cue: tuple[str, str]  # ("--text", "siren") or ("--audio", path)
    first_boot: bool = False


def scenarios(clip: str) -> tuple[Scenario, ...]:
    """The cue kinds, the free text last (warm cache, then first boot)."""
    return (Scenario("curated text cue (overrides.yaml: 'siren')", ("--text", "siren")),
            Scenario("WordNet cue ('goldfish')", ("--text", "goldfish")),
            Scenario(f"sound, AudioSet ontology (YAMNet, {Path(clip).name})", ("--audio", clip)),
            Scenario("free text, MiniLM, warm cache", ("--text", "something shiny and striped")),
            Scenario("free text, MiniLM, first boot (empty cache)", ("--text", "something shiny and striped"), True))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cold start of crossmodal.run in fresh processes")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per scenario (median)")
    parser.add_argument("--first-boot-runs", type=int, default=None, help="for the first-boot scenario (default --runs)")
    parser.add_argument("--image", default=str(IMAGE))
    parser.add_argument("--clip", default=str(CLIP), help="sound of the audio scenario")
    add_json_argument(parser)
    return parser


def _command(scenario: Scenario, image: str, importtime: bool = False) -> list[str]:
    return [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "crossmodal.run", "--image", image,
            *scenario.cue, "--json"]


def _run(scenario: Scenario, image: str, cache: str, importtime: bool = False) -> tuple[float, dict, str]:
    """One fresh process: (wall ms, the CLI's timings, its stderr)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CROSSMODAL_CACHE": cache}
    start = time.perf_counter()
    done = subprocess.run(_command(scenario, image, importtime), env=env, capture_output=True, text=True, check=False)
    wall = 1e3 * (time.perf_counter() - start)
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.name}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall, json.loads(done.stdout)["timings"], done.stderr


def _imported(stderr: str) -> list[str]:
    names = {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return [m for m in WATCHED if m in names]


def measure(scenario: Scenario, image: str, runs: int, warm_cache: str) -> dict[str, Any]:
    """Medians over ``runs`` fresh processes of one scenario."""
    walls: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    rest: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as empty:
            wall, timings, _ = _run(scenario, image, empty if scenario.first_boot else warm_cache)
        walls.append(wall)
        parts = {name: sum(timings.get(k, 0.0) for k in keys) for name, keys in STAGES}
        for name, value in parts.items():
            stages[name].append(value)
        rest.append(wall - sum(parts.values()))
    with tempfile.TemporaryDirectory() as empty:
        _, _, stderr = _run(scenario, image, empty if scenario.first_boot else warm_cache, importtime=True)
    return {"scenario": scenario.name, "runs": runs, "wall_ms": statistics.median(walls),
            "wall_ms_all": walls, "start_and_imports_ms": statistics.median(rest),
            **{f"{name}_ms": statistics.median(v) for name, v in stages.items()}, "imported": _imported(stderr)}


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.runs < 1:
        raise ValueError(f"--runs {args.runs}: expected at least 1")
    for path in (args.image, args.clip):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: not found (the shared data folder)")
    cases = scenarios(args.clip)
    with tempfile.TemporaryDirectory() as warm:
        _run(cases[3], args.image, warm)  # fills the warm cache (a first boot writes what it computes)
        rows = [measure(s, args.image, (args.first_boot_runs or args.runs) if s.first_boot else args.runs, warm)
                for s in cases]
    result = {"machine": machine(), "rows": rows}
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    header = ["scenario", "runs", "wall s", "start + imports s", *(f"{n} s" for n, _ in STAGES), "imports"]
    rows = [[r["scenario"], r["runs"], cell(r["wall_ms"] / 1e3, ".2f"), cell(r["start_and_imports_ms"] / 1e3, ".2f"),
             *(cell(r[f"{n}_ms"] / 1e3, ".2f") for n, _ in STAGES), ", ".join(r["imported"]) or "-"]
            for r in result["rows"]]
    return "\n".join([machine_line(result["machine"]) + "; medians of fresh processes run one after the other",
                      "", markdown_table(header, rows)])


if __name__ == "__main__":
    exit_process(run_cli(get_args_parser(), main, render=render))
