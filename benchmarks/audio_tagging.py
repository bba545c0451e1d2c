"""CPU latency of audio tagging: YAMNet (the default) and AST's exact and fast paths in one table, a CueStream
real-time row, and how far AST's fast paths' scores move.

    python -m benchmarks.audio_tagging --threads 2 --runs 5     (from the repository root)

YAMNet: the packaged model, load time (first `AudioTagger.from_pretrained("yamnet")` in the process) and
`scores()` of a noise clip end to end (windows, front end, network, pooling); budgets 20 ms for 1 s, 100 ms for
10 s, 0.5 s to load. CueStream: `crossmodal.stream.CueStream` with the YAMNet cue as tag function and a trivial
guide, 1 s ring buffer re-tagged every 0.5 s, on one thread (`torch.set_num_threads(1)`); the time per re-tag
against the 500 ms of audio that arrive meanwhile.

Latency: a randomly initialised AST-base (ASTConfig defaults: 86.6M parameters, 1024 frames, 128 mel bins,
527 labels), batch 1, end to end from a 16 kHz waveform (fbank + model + sigmoid), median of --runs runs after
one warm-up, the four paths taking turns within each run. Score differences: max |score - exact score| over all 527 labels on a small randomly initialised
AST, for noise clips of each duration and for the real clips in ../shared/data/audio (if present). No AudioSet
weights are available offline, so no difference is measured on a trained model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import transformers.models.audio_spectrogram_transformer.feature_extraction_audio_spectrogram_transformer as ast_fe
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

from audio import AudioTagger, load_audio
from audio.ast import ASTTagger
from audio.labels import audioset_labels
from benchmarks.common import write_json
from xmcommon.cli import exit_process, run_cli

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
    taggers = {name: ASTTagger(model, extractor, **options) for name, options in PATHS.items()}
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
    taggers = {name: ASTTagger(model, extractor, **options) for name, options in PATHS.items()}
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


def yamnet_rows(durations: list[float], runs: int, seed: int) -> dict:
    """Load time and median `scores()` time per clip length of the packaged YAMNet."""
    start = time.perf_counter()
    tagger = AudioTagger.from_pretrained("yamnet")
    load = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    latency = {}
    for seconds in durations:
        waveform = rng.uniform(-0.5, 0.5, int(seconds * 16_000)).astype(np.float32)
        latency[seconds] = median_seconds(lambda: tagger.scores(waveform, sampling_rate=16_000), runs)
    return {"load_s": load, "latency_s": latency, "tagger": tagger}


def cue_stream_row(tagger, runs: int, seed: int) -> dict:
    """Median seconds per re-tag of a CueStream fed 0.5 s chunks, on one thread."""
    from crossmodal.stream import CueStream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trivial_guide = lambda cue: SimpleNamespace(classes=(), confident=False)  # noqa: E731
        stream = CueStream(lambda wave, rate: tagger.cue(wave, sampling_rate=rate), trivial_guide,
                           sampling_rate=16_000, window_seconds=1.0, interval_seconds=0.5)
        chunk = np.random.default_rng(seed).uniform(-0.5, 0.5, 8_000).astype(np.float32)
        stream.push(chunk)
        stream.push(chunk)  # warm-up: the ring buffer is full from here on
        times = [time_once(lambda: stream.push(chunk)) for _ in range(max(runs, 10))]
    finally:
        torch.set_num_threads(threads)
    return {"retag_s": statistics.median(times), "budget_s": 0.5, "tags": stream.tag_count}


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
    yamnet = yamnet_rows(args.durations, args.runs, args.seed)
    result = {
        "yamnet_load_s": yamnet["load_s"],
        "yamnet_latency": [{"seconds": s, "median_s": t} for s, t in yamnet["latency_s"].items()],
        "cue_stream": cue_stream_row(yamnet.pop("tagger"), args.runs, args.seed),
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
        write_json(args.output, result)
    return result


def render(result: dict, args: argparse.Namespace) -> str:
    """The tables of a :func:`main` result."""
    lines: list[str] = []
    out = lines.append
    fbank = result["fbank_10s"]
    out(f"YAMNet and AST-base (random init, {result['ast_base_params_millions']}M params), {result['threads']} threads, "
          f"batch 1, median of {result['runs']} runs; 1-min load average {result['load_average_1min_before']:.1f} "
          f"before, {result['load_average_1min_after']:.1f} after (CPU shared with other jobs)")
    out(f"fbank on 10 s: torchaudio Kaldi path active = {fbank['torchaudio_kaldi_path_active']}; "
          f"{fbank['installed_s'] * 1000:.1f} ms installed path vs {fbank['numpy_fallback_s'] * 1000:.1f} ms numpy "
          f"fallback ({fbank['numpy_fallback_s'] / fbank['installed_s']:.1f}x)")
    names = list(PATHS)
    budgets = {1.0: "<= 20 ms", 10.0: "<= 100 ms"}
    out("\n| model | path | clip (s) | median (ms) | budget |")
    out("|---|---|---|---|---|")
    out(f"| YAMNet (packaged) | load | - | {result['yamnet_load_s'] * 1000:.0f} | <= 500 ms |")
    for row in result["yamnet_latency"]:
        out(f"| YAMNet (packaged) | scores | {row['seconds']:g} | {row['median_s'] * 1000:.1f} | "
              f"{budgets.get(row['seconds'], '-')} |")
    for row in result["latency"]:
        for n in names:
            out(f"| AST-base (random init) | {n} | {row['seconds']:g} | {row[f'{n}_s'] * 1000:.0f} | - |")
    stream = result["cue_stream"]
    out(f"| YAMNet CueStream, 1 thread | re-tag 1 s buffer every 0.5 s | 1 | {stream['retag_s'] * 1000:.1f} | "
          f"<= {stream['budget_s'] * 1000:.0f} ms ({stream['retag_s'] / stream['budget_s']:.1%} of real time) |")
    others = [n for n in names if n != "exact"]
    out(f"\nmax |score - exact score| on a small random AST ({SMALL}), 527 labels")
    out("| clip | s | std of exact scores | " + " | ".join(others) + " |")
    out("|---" * (len(others) + 3) + "|")
    rows = result["score_differences_small_ast"]
    noise, real = [r for r in rows if r["clip"].startswith("noise")], [r for r in rows if not r["clip"].startswith("noise")]
    for row in noise:
        cells = " | ".join(f"{row[f'max_diff_{n}']:.2e}" for n in others)
        out(f"| {row['clip']} | {row['seconds']:g} | {row['exact_score_std']:.3f} | {cells} |")
    if real:
        cells = " | ".join(
            f"{max(r[f'max_diff_{n}'] for r in real):.2e} (median {statistics.median(r[f'max_diff_{n}'] for r in real):.2e})"
            for n in others
        )
        seconds = f"{min(r['seconds'] for r in real):g}-{max(r['seconds'] for r in real):g}"
        stds = statistics.median(r["exact_score_std"] for r in real)
        out(f"| {len(real)} real clips (max, median) | {seconds} | {stds:.3f} | {cells} |")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
