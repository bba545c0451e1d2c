"""How closely the PyTorch YAMNet reproduces Google's TFLite runtime on every window of the 24 shared clips.

    python -m benchmarks.audio_parity            (from the repository root; needs ../shared/data and ai-edge-litert)

Windows are the tagger's (15,600 samples every 7,680, the last aligned to the clip's end, a short clip padded).
Rows: the front end's log-mel patches against the runtime's; the network fed the runtime's own patches; the
whole tagger; and, as the yardstick, the runtime against itself when 1 % of each window's samples move by one
float32 step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from audio import AudioTagger, load_audio
from audio.windows import iter_windows
from audio.yamnet.reference import tflite_outputs
from xmcommon.cli import exit_process, run_cli

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def summary(differences: list[np.ndarray], top_same: int) -> dict:
    """Max |diff|, the share of entries within 1e-3 and 1e-5, the median per-window max, top-1 agreement."""
    flat = np.concatenate([d.ravel() for d in differences])
    per_window = np.concatenate([d.reshape(len(d), -1).max(axis=1) for d in differences])
    return {"max": float(flat.max()), "within_1e-3": float((flat <= 1e-3).mean()),
            "within_1e-5": float((flat <= 1e-5).mean()), "median_window_max": float(np.median(per_window)),
            "windows": len(per_window), "same_top1": top_same}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    return parser


def main(args: argparse.Namespace) -> dict:
    model_path = args.shared / "audio-models" / "yamnet" / "yamnet.tflite"
    clips = sorted((args.shared / "audio").glob("*/*.*"))
    if not model_path.is_file() or not clips:
        raise FileNotFoundError(f"{args.shared}: needs audio-models/yamnet/yamnet.tflite and audio/*/*")
    tagger = AudioTagger.from_pretrained("yamnet")
    rows = {name: ([], 0) for name in ("front end (log-mel)", "network on TFLite log-mel", "tagger scores",
                                       "TFLite vs TFLite, 1 % of samples nudged")}
    rng = np.random.default_rng(0)
    for clip in clips:
        windows = np.stack([np.pad(w, (0, 15_600 - len(w))) for w in iter_windows([load_audio(clip)], 15_600, 7_680)])
        scores, log_mel = tflite_outputs(model_path, windows)
        nudged, _ = tflite_outputs(model_path, windows, nudge=rng)
        with torch.inference_mode():
            ours_log_mel = tagger.frontend(torch.from_numpy(windows)).numpy()
            on_theirs = torch.sigmoid(tagger.model(torch.from_numpy(log_mel))).numpy()
        ours = tagger.window_scores(list(windows))
        for name, mine, theirs in (("front end (log-mel)", ours_log_mel, log_mel),
                                   ("network on TFLite log-mel", on_theirs, scores),
                                   ("tagger scores", ours, scores),
                                   ("TFLite vs TFLite, 1 % of samples nudged", nudged, scores)):
            differences, same = rows[name]
            differences.append(np.abs(mine - theirs))
            same_top = int((mine.argmax(-1) == theirs.argmax(-1)).sum()) if mine.ndim == 2 else 0
            rows[name] = (differences, same + same_top)
    return {name: summary(*row) for name, row in rows.items()}


def render(result: dict, args: argparse.Namespace) -> str:
    lines = ["| compared | max abs diff | entries within 1e-3 | within 1e-5 | median of window max | same top-1 |",
             "|---|---|---|---|---|---|"]
    for name, row in result.items():
        top = f"{row['same_top1']}/{row['windows']}" if "log-mel)" not in name else "-"
        lines.append(f"| {name} | {row['max']:.2e} | {row['within_1e-3']:.4%} | {row['within_1e-5']:.4%} | "
                     f"{row['median_window_max']:.2e} | {top} |")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render=render)


if __name__ == "__main__":
    exit_process(cli())
