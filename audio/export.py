"""``python -m audio.export --out yamnet.onnx``: the packaged audio tagger as a self-describing ONNX file.

Waveform windows in, one score per AudioSet label out, with the labels, windowing, pooling and silence rule in
the metadata (:mod:`audio.yamnet.onnx`): what a torch-free robot loop (``examples/robot_loop.py``) runs.
Exit codes: 0 ok, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from xmcommon.cli import exit_process, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export the audio tagger to a self-describing ONNX file.")
    parser.add_argument("--audio-model", default="yamnet", help="'yamnet' (packaged) or a YAMNet model directory")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    from audio.yamnet import YAMNetTagger
    from audio.yamnet.onnx import export_tagger_onnx

    tagger = YAMNetTagger.from_pretrained(args.audio_model)
    start = time.perf_counter()
    out = export_tagger_onnx(tagger, Path(args.out))
    return {"out": str(out), "bytes": out.stat().st_size, "export_seconds": time.perf_counter() - start,
            "labels": len(tagger.labels), "window_samples": tagger.window_samples, "hop_samples": tagger.hop_samples}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
