"""Benchmark the cue mapper: start-up, per-cue latency and quality on benchmarks/mapping_cues.yaml.

    HF_HUB_OFFLINE=1 python -m benchmarks.mapping [--repeats 20] [--cache-dir DIR]

Latency is the median over ``--repeats`` calls per cue after start-up (class embeddings cached) and one
warm-up call, the cue kinds taking turns within each round (``benchmarks.common``), measured once with
torch's default thread count and once with one thread; the CPU column (process time) is what the call
costs on an otherwise idle core. Quality: precision / recall / abstain accuracy of
``mappings.evaluation.evaluate`` on the cue table, with and without the overrides table.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import add_json_argument, interleaved_timings, machine, machine_line, markdown_table, write_json
from mappings import CueMapper
from mappings.evaluation import evaluate, load_eval_cases
from xmcommon.cli import exit_process, run_cli

TABLE = Path(__file__).with_name("mapping_cues.yaml")
NEW_TEXT = None  # a cue that sends a new text each call (never memoised)
LATENCY_CUES = {
    "AudioSet, ontology walk + WordNet (Meow)": [("Meow", 0.8)],
    "AudioSet, WordNet (Piano)": [("Piano", 0.9)],
    "AudioSet, embedding (Typewriter)": [("Typewriter", 0.9)],
    "AudioSet, abstain (Speech)": [("Speech", 0.9)],
    "tagger output, 5 labels": [("Animal", 0.95), ("Domestic animals, pets", 0.9), ("Cat", 0.85),
                                ("Meow", 0.8), ("Speech", 0.3)],
    "text, WordNet phrase": "where is my coffee mug",
    "text, embedding fallback (new text each call)": NEW_TEXT,
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cue mapper start-up, per-cue latency and quality on the cue table.")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache-dir", default=None, help="embedding cache; default: a fresh temp dir (cold start)")
    add_json_argument(parser)
    return parser


def _calls(mapper: CueMapper) -> dict[str, Callable[[], object]]:
    """One zero-argument call per cue kind; the new-text kind sends a text never sent before at every call."""
    counter = itertools.count()
    calls = {}
    for name, cue in LATENCY_CUES.items():
        if cue is NEW_TEXT:
            calls[name] = lambda: mapper.map(f"what is making this noise, take {next(counter)}")
        else:
            calls[name] = lambda cue=cue: mapper.map(cue)
    return calls


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    cache = args.cache_dir or tempfile.mkdtemp(prefix="mapping-bench-")
    t = time.perf_counter()
    mapper = CueMapper.default(cache_dir=cache)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    CueMapper.default(cache_dir=cache)
    warm = time.perf_counter() - t
    default_threads = torch.get_num_threads()
    calls = _calls(mapper)
    try:
        multi = interleaved_timings(calls, args.repeats)
        torch.set_num_threads(1)
        single = interleaved_timings(calls, args.repeats)
    finally:
        torch.set_num_threads(default_threads)
    latency = {name: {"ms_default_threads": multi[name].wall_ms, "ms_one_thread": single[name].wall_ms,
                      "cpu_ms_one_thread": single[name].cpu_ms} for name in LATENCY_CUES}
    cases = load_eval_cases(TABLE, mapper.hierarchy)
    quality = {"with overrides": evaluate(mapper, cases)}
    ablation = CueMapper(replace(mapper.config, overrides=""), encoder=mapper.encoder)
    quality["without overrides"] = evaluate(ablation, cases)
    imperfect = [r for r in quality["with overrides"].rows
                 if r.get("ok") is False or r.get("recall", 1.0) < 1.0 or r.get("precision") not in (None, 1.0)]
    latency_table = markdown_table(
        ("cue kind", f"median ms ({default_threads} threads)", "median ms (1 thread)", "CPU ms (1 thread)"),
        ([name, f"{row['ms_default_threads']:.2f}", f"{row['ms_one_thread']:.2f}", f"{row['cpu_ms_one_thread']:.2f}"]
         for name, row in latency.items()), "lrrr")
    quality_table = markdown_table(
        (f"evaluation ({len(cases)} cues)", "precision", "recall", "abstain accuracy", "positives", "abstain cases"),
        ([name, f"{rep.precision:.3f}", f"{rep.recall:.3f}", f"{rep.abstain_accuracy:.3f}", rep.n_positive,
          rep.n_abstain] for name, rep in quality.items()), "lrrrrr")
    result = {"machine": machine(), "default_threads": default_threads, "repeats": args.repeats,
              "cache": "as found in --cache-dir" if args.cache_dir else "empty: model load + embedding the class texts",
              "startup_cold_s": cold, "startup_warm_s": warm, "latency": latency,
              "quality": {k: {kk: vv for kk, vv in v.to_dict().items() if kk != "rows"} for k, v in quality.items()},
              "imperfect": imperfect, "rows": [{"cue_kind": name, **row} for name, row in latency.items()],
              "tables": [latency_table, quality_table]}
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    startup = (f"start-up: {result['startup_cold_s']:.1f} s with the embedding cache {result['cache']}; "
               f"{result['startup_warm_s']:.2f} s with a warm cache (model loads lazily); "
               f"{result['default_threads']} torch threads by default")
    lines = [startup, f"{machine_line(result['machine'])} (shared machine); median of {result['repeats']} calls", "",
             result["tables"][0], "", result["tables"][1]]
    return "\n".join(lines + [f"imperfect: {r}" for r in result["imperfect"]])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
