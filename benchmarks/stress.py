"""One classifier, many threads, for a while: throughput and errors of concurrent guided predictions.

    python -m benchmarks.stress --model default --threads 8 --seconds 60

Each worker thread loops: a new free-text cue every ``--new-cue-every`` requests (the first ones make
the mapper load lazily while other threads predict), a random mode, a random real photo (or generated
frames without ``--images``). Every prediction is checked against the single-threaded result for the
same (photo, cue, mode): the report counts exceptions and mismatches, and gives requests per second
and the latency percentiles. ``--torch-threads`` sets torch's intra-op threads (1 avoids oversubscribing
the cores with several Python threads).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossmodal import MODES, GuidedClassifier
from vision.data import list_labelled_images
from xmcommon.cli import exit_process, run_cli

from .common import add_json_argument, machine, machine_line, markdown_table, write_json

CUES = ("meow", "a dog barking", "find the cat", "church bells", "a goldfish in a bowl", "the sound of a siren",
        "espresso machine", "sea waves", "car horn", "zxq blorf wubba")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="SeqPar model directory or 'default'")
    parser.add_argument("--images", type=Path, help="labelled photo folder (default: generated frames)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the workers run")
    parser.add_argument("--new-cue-every", type=int, default=10, help="requests per new (never seen) text cue")
    parser.add_argument("--frames", type=int, default=16, help="distinct photos / frames used")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    add_json_argument(parser)
    return parser


def _frames(args: argparse.Namespace) -> list[Any]:
    if args.images is None:
        rng = np.random.default_rng(args.seed)
        return [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(args.frames)]
    return [p.path for p in list_labelled_images(args.images)[: args.frames]]


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads < 1 or args.seconds <= 0 or args.new_cue_every < 1:
        raise ValueError("--threads and --new-cue-every must be >= 1 and --seconds > 0")
    torch.set_num_threads(args.torch_threads)
    clf = GuidedClassifier.from_pretrained(args.model)
    frames = _frames(args)
    inputs = clf.preprocessor(frames)
    reference = GuidedClassifier(clf.model)  # its own mapper and cutouts: the single-threaded answers
    expected: dict[tuple[int, str, str], tuple] = {}
    expected_lock = threading.Lock()

    def answer(index: int, cue: str, mode: str) -> tuple:
        """The single-threaded prediction for one request, computed once under a lock."""
        key = (index, cue, mode)
        with expected_lock:
            if key not in expected:
                result = reference.predict_preprocessed(inputs[index:index + 1], reference.guide(text=cue), mode)[0]
                expected[key] = tuple((p.class_id, p.prob) for p in result.predictions)
            return expected[key]

    stop = time.perf_counter() + args.seconds
    latencies: list[float] = []
    errors: list[str] = []
    mismatches = [0]
    barrier = threading.Barrier(args.threads)

    def work(worker: int) -> None:
        rng = random.Random(args.seed * 1000 + worker)
        done = 0
        barrier.wait()
        while time.perf_counter() < stop:
            cue = rng.choice(CUES) if done % args.new_cue_every else f"{rng.choice(CUES)} {worker}-{done}"
            index, mode = rng.randrange(len(frames)), rng.choice(MODES)
            start = time.perf_counter()
            try:
                result = clf.predict_preprocessed(inputs[index:index + 1], clf.guide(text=cue), mode)[0]
            except Exception as err:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies.append(1e3 * (time.perf_counter() - start))
            if tuple((p.class_id, p.prob) for p in result.predictions) != answer(index, cue, mode):
                mismatches[0] += 1
            done += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]
    row = {"threads": args.threads, "requests": len(latencies), "seconds": elapsed,
           "requests_per_s": len(latencies) / elapsed, "errors": len(errors), "mismatches": mismatches[0],
           "median_ms": statistics.median(ordered), "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
           "max_ms": ordered[-1], "distinct_cues": len({k[1] for k in expected})}
    table = markdown_table(
        ["threads", "requests", "requests/s", "errors", "mismatches vs serial", "median ms", "p95 ms", "max ms",
         "distinct cues"],
        [[row["threads"], row["requests"], f"{row['requests_per_s']:.1f}", row["errors"], row["mismatches"],
          f"{row['median_ms']:.1f}", f"{row['p95_ms']:.1f}", f"{row['max_ms']:.1f}", row["distinct_cues"]]],
        "rrrrrrrrr")
    result = {"machine": machine(), "model": str(args.model), "rows": [row], "first_errors": errors[:5],
              "table": table}
    write_json(args.json, result)
    return result


def _render(result: dict[str, Any], args: argparse.Namespace) -> str:
    errors = "\n".join(f"error: {e}" for e in result["first_errors"])
    return f"{machine_line(result['machine'])}; model {result['model']}\n\n{result['table']}" + \
        (f"\n\n{errors}" if errors else "")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, _render)


if __name__ == "__main__":
    exit_process(cli())
