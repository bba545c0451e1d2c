"""Guided pipeline benchmark: per-frame latency with a cached cutout vs the full model, cue -> guide, cutout builds.

Measured side by side in one run through ``GuidedClassifier`` (preprocessed inputs, so image
decoding is not part of it): median of ``--runs`` runs after a warm-up, per frame, at each batch
size. Targets (issue 6): cutout latency <= full latency x (cutout GMAC ratio + 0.1); a new text cue
-> ready cutout in <= 50 ms.

    python -m benchmarks.pipeline --model DIR                 # a saved model (e.g. the default model)
    python -m benchmarks.pipeline --preset nhl_resnet50 --num-classes 1000

(Run it with -m from the repository root: as a script, benchmarks/audio.py would shadow the audio package.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from crossmodal import MODES, GuidedClassifier
from vision import SeqParModel, load_seqpar
from vision.presets import preset

TEXT_CUES = ("meow", "a dog barking", "find the cat", "church bells", "a goldfish in a bowl", "the sound of a siren",
             "espresso machine", "crow", "sea waves", "car horn")


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median milliseconds of each function, timed in rotation (one warm-up each) so load drifts hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="saved SeqPar model directory (or 'default')")
    parser.add_argument("--preset", default="nhl_resnet50", help="vision preset when no --model (random weights)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--cue", default="meow", help="text cue whose cutout is timed")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_seqpar(args.model) if args.model else SeqParModel(preset(args.preset, num_classes=args.num_classes))
    clf = GuidedClassifier(model)
    name = args.model or f"{args.preset} ({args.num_classes} classes, random weights)"
    print(f"model: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; CPU shared with other jobs")

    start = time.perf_counter()
    clf.cues.mapper  # noqa: B018 - load once, outside the timings
    print(f"mapper load: {time.perf_counter() - start:.1f} s")
    cue_ms = []
    for text in TEXT_CUES:  # each text is new to the mapper: no query-embedding cache hit
        start = time.perf_counter()
        guide = clf.guide(text=text)
        cue_ms.append((text, 1e3 * (time.perf_counter() - start), len(guide.classes)))
    guide = clf.guide(text=args.cue)
    _, fallback, classes = clf.resolve(guide, "cutout")
    if fallback:
        raise SystemExit(f"cue {args.cue!r} gives no cutout on this model: {fallback}")

    build_ms, ready_ms = [], []
    for i in range(args.runs):
        clf.cutouts.clear()
        start = time.perf_counter()
        clf.cutouts.get(classes)
        build_ms.append(1e3 * (time.perf_counter() - start))
        clf.cutouts.clear()
        text = f"{args.cue}" if i == 0 else f"{args.cue} {'!' * i}"  # a new text each time
        start = time.perf_counter()
        clf.cutouts.get(clf.resolve(clf.guide(text=text), "cutout")[2])
        ready_ms.append(1e3 * (time.perf_counter() - start))
    cut_cost = clf.cutouts.get(classes)[0].cost
    ratio = cut_cost.macs / clf.full_cost.macs

    print("\n| text cue | cue -> guide (ms) | classes |\n|---|---:|---:|")
    for text, ms, n in cue_ms:
        print(f"| {text} | {ms:.1f} | {n} |")
    print(f"\ncue {args.cue!r}: {len(classes)} classes; cutout build (cutout + cost accounting) median "
          f"{statistics.median(build_ms):.1f} ms; new text cue -> ready cutout median {statistics.median(ready_ms):.1f} ms "
          f"(target <= 50 ms)")
    print(f"GMACs per frame: full {clf.full_cost.macs / 1e9:.3f}, cutout {cut_cost.macs / 1e9:.3f} (ratio {ratio:.3f}); "
          f"params: full {clf.full_cost.params / 1e6:.2f} M, cutout {cut_cost.params / 1e6:.2f} M\n")
    print("| batch | mode | ms per frame | ratio to full | target ratio (GMAC ratio + 0.1) | met |")
    print("|---:|---|---:|---:|---:|---|")
    size = clf.preprocessor.image_size
    for batch in args.batches:
        x = torch.randn(batch, 3, size, size)
        fns = {mode: (lambda m=mode: clf.predict_preprocessed(x, guide if m != "unguided" else None, m))
               for mode in MODES}
        ms = {mode: value / batch for mode, value in interleaved_medians(fns, args.runs).items()}
        for mode in MODES:
            ratio_to_full = ms[mode] / ms["unguided"]
            cut = mode.startswith("cutout")
            print(f"| {batch} | {mode}{' (cached)' if cut else ''} | {ms[mode]:.1f} | {ratio_to_full:.2f} | "
                  f"{f'{ratio + 0.1:.2f}' if cut else ''} | {('yes' if ratio_to_full <= ratio + 0.1 else 'no') if cut else ''} |")


if __name__ == "__main__":
    main()
