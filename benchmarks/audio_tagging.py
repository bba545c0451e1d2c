"""CPU latency of AST audio tagging, exact vs fast paths, and how far the fast paths' scores move.

    PYTHONPATH=. python -m benchmarks.audio --threads 2 --runs 5   (as a module: a script named audio.py
    run by path would shadow the audio package)

Latency: a randomly initialised AST-base (ASTConfig defaults: 86.6M parameters, 1024 frames, 128 mel bins,
527 labels), batch 1, end to end from a 16 kHz waveform (fbank + model + sigmoid), median of --runs runs after
one warm-up, the four paths taking turns within each run. Score differences: max |score - exact score| over all 527 labels on a small randomly initialised
AST, for noise clips of each duration and for the real clips in ../shared/data/audio (if present). No AudioSet
weights are available offline, so no difference is measured on a trained model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import transformers.models.audio_spectrogram_transformer.feature_extraction_audio_spectrogram_transformer as ast_fe
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from audio import AudioTagger, load_audio
from audio.labels import audioset_labels

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
PATHS = {"exact": {}, "exact+int8": {"quantize": True}, "fast": {"fast": True}, "fast+int8": {"fast": True, "quantize": True}}
SMALL = {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768}


def random_ast(seed: int, **overrides) -> ASTForAudioClassification:
    """A randomly initialised AST with the AudioSet labels; tokens and positions drawn like AST's timm init."""
    torch.manual_seed(seed)
    names = [name for _, name in audioset_labels()]
    model = ASTForAudioClassification(ASTConfig(id2label=dict(enumerate(names)), **overrides)).eval()
    embeddings = model.audio_spectrogram_transformer.embeddings
    with torch.no_grad():
        for parameter in (embeddings.position_embeddings, embeddings.cls_token, embeddings.distillation_token):
            torch.nn.init.trunc_normal_(parameter, std=0.02)
    return model


def time_once(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_seconds(function, runs: int) -> float:
    function()  # warm-up
    return statistics.median(time_once(function) for _ in range(runs))


def fbank_timings(waveform: np.ndarray, runs: int) -> dict:
    """Median fbank time of the extractor as installed, and of transformers' numpy fallback (torchaudio hidden)."""
    installed = ASTFeatureExtractor()
    result = {"torchaudio_kaldi_path_active": bool(ast_fe.is_speech_available())}
    result["installed_s"] = median_seconds(lambda: installed(waveform, sampling_rate=16_000), runs)
    original = ast_fe.is_speech_available
    ast_fe.is_speech_available = lambda: False
    try:
        numpy_path = ASTFeatureExtractor()
        result["numpy_fallback_s"] = median_seconds(lambda: numpy_path(waveform, sampling_rate=16_000), runs)
    finally:
        ast_fe.is_speech_available = original
    return result


def score_differences(durations: list[float], seed: int) -> list[dict]:
    """Max |fast-path score - exact score| of a small random AST on noise clips and the real shared clips."""
    model, extractor = random_ast(seed, **SMALL), ASTFeatureExtractor()
    taggers = {name: AudioTagger(model, extractor, **options) for name, options in PATHS.items()}
    rng = np.random.default_rng(seed)
    clips = [(f"noise {d:g} s", rng.uniform(-0.5, 0.5, int(d * 16_000)).astype(np.float32)) for d in durations]
    clips += [(f"{p.parent.name}/{p.name}", load_audio(p)) for p in sorted(SHARED_AUDIO.glob("*/*.*"))]
    rows = []
    for name, waveform in clips:
        scores = {path: tagger.scores(waveform, sampling_rate=16_000) for path, tagger in taggers.items()}
        row = {"clip": name, "seconds": round(len(waveform) / 16_000, 2), "exact_score_std": float(scores["exact"].std())}
        row.update({f"max_diff_{path}": float(np.abs(scores[path] - scores["exact"]).max()) for path in PATHS if path != "exact"})
        rows.append(row)
    return rows


def latency_table(durations: list[float], runs: int, seed: int) -> list[dict]:
    """Median seconds per path and clip length; the paths take turns within each run, so load spikes on the
    shared CPU hit all of them alike and their ratios stay comparable."""
    model, extractor = random_ast(seed), ASTFeatureExtractor()
    taggers = {name: AudioTagger(model, extractor, **options) for name, options in PATHS.items()}
    rng = np.random.default_rng(seed)
    rows = []
    for seconds in durations:
        waveform = rng.uniform(-0.5, 0.5, int(seconds * 16_000)).astype(np.float32)
        calls = {name: (lambda t=tagger: t.scores(waveform, sampling_rate=16_000)) for name, tagger in taggers.items()}
        for call in calls.values():
            call()  # warm-up
        times = {name: [] for name in calls}
        for _ in range(runs):
            for name, call in calls.items():
                times[name].append(time_once(call))
        rows.append({"seconds": seconds, **{f"{name}_s": statistics.median(t) for name, t in times.items()}})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 5.0, 10.0], help="clip lengths (s)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.runs < 5:
        raise ValueError(f"--runs must be >= 5 for a meaningful median, got {args.runs}")
    torch.set_num_threads(args.threads)
    base_params = sum(p.numel() for p in random_ast(args.seed).parameters())
    result = {
        "load_average_1min_before": os.getloadavg()[0],
        "threads": args.threads,
        "runs": args.runs,
        "ast_base_params_millions": round(base_params / 1e6, 1),
        "fbank_10s": fbank_timings(np.random.default_rng(0).uniform(-0.5, 0.5, 160_000).astype(np.float32), args.runs),
        "latency": latency_table(args.durations, args.runs, args.seed),
        "score_differences_small_ast": score_differences(args.durations, args.seed),
    }
    result["load_average_1min_after"] = os.getloadavg()[0]
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    return result


def print_tables(result: dict) -> None:
    fbank = result["fbank_10s"]
    print(f"AST-base (random init, {result['ast_base_params_millions']}M params), {result['threads']} threads, "
          f"batch 1, median of {result['runs']} runs; 1-min load average {result['load_average_1min_before']:.1f} "
          f"before, {result['load_average_1min_after']:.1f} after (CPU shared with other jobs)")
    print(f"fbank on 10 s: torchaudio Kaldi path active = {fbank['torchaudio_kaldi_path_active']}; "
          f"{fbank['installed_s'] * 1000:.1f} ms installed path vs {fbank['numpy_fallback_s'] * 1000:.1f} ms numpy "
          f"fallback ({fbank['numpy_fallback_s'] / fbank['installed_s']:.1f}x)")
    names = list(PATHS)
    print("\n| clip (s) | " + " | ".join(f"{n} (s)" for n in names) + " | fast+int8 speed-up |")
    print("|---" * (len(names) + 2) + "|")
    for row in result["latency"]:
        cells = " | ".join(f"{row[f'{n}_s']:.3f}" for n in names)
        print(f"| {row['seconds']:g} | {cells} | {row['exact_s'] / row['fast+int8_s']:.1f}x |")
    others = [n for n in names if n != "exact"]
    print(f"\nmax |score - exact score| on a small random AST ({SMALL}), 527 labels")
    print("| clip | s | std of exact scores | " + " | ".join(others) + " |")
    print("|---" * (len(others) + 3) + "|")
    rows = result["score_differences_small_ast"]
    noise, real = [r for r in rows if r["clip"].startswith("noise")], [r for r in rows if not r["clip"].startswith("noise")]
    for row in noise:
        cells = " | ".join(f"{row[f'max_diff_{n}']:.2e}" for n in others)
        print(f"| {row['clip']} | {row['seconds']:g} | {row['exact_score_std']:.3f} | {cells} |")
    if real:
        cells = " | ".join(
            f"{max(r[f'max_diff_{n}'] for r in real):.2e} (median {statistics.median(r[f'max_diff_{n}'] for r in real):.2e})"
            for n in others
        )
        seconds = f"{min(r['seconds'] for r in real):g}-{max(r['seconds'] for r in real):g}"
        stds = statistics.median(r["exact_score_std"] for r in real)
        print(f"| {len(real)} real clips (max, median) | {seconds} | {stds:.3f} | {cells} |")


if __name__ == "__main__":
    print_tables(main(get_args_parser().parse_args()))
