"""Benchmark the cue mapper: start-up, per-cue latency and quality on benchmarks/mapping_cues.yaml.

    HF_HUB_OFFLINE=1 python benchmarks/mapping.py [--repeats 20] [--cache-dir DIR]

Latency is the median over ``--repeats`` calls per cue after start-up (class embeddings cached),
measured side by side with torch's default thread count and with one thread; the CPU column
(process time) is what the call costs on an otherwise idle core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mappings import CueMapper  # noqa: E402
from mappings.evaluation import evaluate, load_eval_cases  # noqa: E402

TABLE = Path(__file__).with_name("mapping_cues.yaml")
LATENCY_CUES = {
    "AudioSet, ontology walk + WordNet (Meow)": [("Meow", 0.8)],
    "AudioSet, WordNet (Piano)": [("Piano", 0.9)],
    "AudioSet, embedding (Typewriter)": [("Typewriter", 0.9)],
    "AudioSet, abstain (Speech)": [("Speech", 0.9)],
    "tagger output, 5 labels": [("Animal", 0.95), ("Domestic animals, pets", 0.9), ("Cat", 0.85),
                                ("Meow", 0.8), ("Speech", 0.3)],
    "text, WordNet phrase": "where is my coffee mug",
    "text, embedding fallback (new text each call)": None,
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache-dir", default=None, help="embedding cache; default: a fresh temp dir (cold start)")
    return parser


def _median_ms(mapper: CueMapper, cue, repeats: int, run: int) -> tuple[float, float]:
    """Median wall and CPU (process) ms; ``cue=None`` sends a new text each call (never memoised)."""
    wall, cpu = [], []
    for i in range(repeats):
        c = cue if cue is not None else f"what is making this noise, take {run}-{i}"
        t, p = time.perf_counter(), time.process_time()
        mapper.map(c)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - p) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main(args: argparse.Namespace) -> dict:
    cache = args.cache_dir or tempfile.mkdtemp(prefix="mapping-bench-")
    t = time.perf_counter()
    mapper = CueMapper.default(cache_dir=cache)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    CueMapper.default(cache_dir=cache)
    warm = time.perf_counter() - t
    default_threads = torch.get_num_threads()
    latency = {}
    for name, cue in LATENCY_CUES.items():
        torch.set_num_threads(default_threads)
        multi, _ = _median_ms(mapper, cue, args.repeats, run=0)
        torch.set_num_threads(1)
        single, single_cpu = _median_ms(mapper, cue, args.repeats, run=1)
        latency[name] = {"ms_default_threads": multi, "ms_one_thread": single, "cpu_ms_one_thread": single_cpu}
    torch.set_num_threads(default_threads)
    cases = load_eval_cases(TABLE, mapper.hierarchy)
    quality = {"with overrides": evaluate(mapper, cases)}
    ablation = CueMapper(replace(mapper.config, overrides=""), encoder=mapper.encoder)
    quality["without overrides"] = evaluate(ablation, cases)
    state = "as found in --cache-dir" if args.cache_dir else "empty: model load + embedding 1632 texts"
    print(f"start-up: {cold:.1f} s with the embedding cache {state}; {warm:.2f} s with a warm cache "
          f"(model loads lazily); {default_threads} torch threads by default")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    print(f"\n| cue kind | median ms ({default_threads} threads) | median ms (1 thread) | CPU ms (1 thread) |"
          "\n|---|---:|---:|---:|")
    for name, row in latency.items():
        print(f"| {name} | {row['ms_default_threads']:.2f} | {row['ms_one_thread']:.2f} | "
              f"{row['cpu_ms_one_thread']:.2f} |")
    print(f"\n| evaluation ({len(cases)} cues) | precision | recall | abstain accuracy | positives | abstain cases |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rep in quality.items():
        print(f"| {name} | {rep.precision:.3f} | {rep.recall:.3f} | {rep.abstain_accuracy:.3f} | "
              f"{rep.n_positive} | {rep.n_abstain} |")
    misses = [r for r in quality["with overrides"].rows
              if r.get("ok") is False or r.get("recall", 1.0) < 1.0 or r.get("precision") not in (None, 1.0)]
    for r in misses:
        print(f"imperfect: {r}")
    return {"startup_cold_s": cold, "startup_warm_s": warm, "latency": latency,
            "quality": {k: {kk: vv for kk, vv in v.to_dict().items() if kk != "rows"} for k, v in quality.items()}}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
