"""``python -m crossmodal.run --image scene.jpg --text "meow"`` (or ``--audio meow.wav``): one guided prediction.

Exit codes: 0 ok, 2 bad input (missing file, bad argument, model not available offline), 1 internal error.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mappings.guide import shorten
from xmcommon.cli import exit_process, render_json, run_cli

from .result import MODES

OFFLINE_HINT = ("The packaged 'yamnet' tagger works offline (the default); pass another local audio model with "
                "--audio-model DIR, or a text cue (e.g. --text \"meow\").")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossmodal", description="Guided visual recognition: a sound or text cue selects and amplifies the "
                                       "parts of a SeqPar network that matter for the cued categories.")
    parser.add_argument("--image", required=True, help="image file to classify")
    cue = parser.add_mutually_exclusive_group()
    cue.add_argument("--audio", help="sound file whose tags (AudioSet labels) give the cue")
    cue.add_argument("--text", help="text cue, e.g. 'meow' or 'find the cat'")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="default: cutout+attend with a cue, unguided without")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--model", default="default", help="SeqPar model directory (default: the packaged model)")
    parser.add_argument("--audio-model", default=None,
                        help="audio tagger: 'yamnet' (the packaged default, offline), an AST hub id (needs network or "
                             "the hub cache) or a local model directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Reject bad arguments before any model loads (seconds), naming the argument."""
    for flag in ("image", "audio"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{flag} {path}: file not found")
    if args.top_k < 1:
        raise ValueError(f"--top-k {args.top_k}: expected a positive number of predictions")
    if args.text is not None and not args.text.strip():
        raise ValueError("--text is empty: expected a cue such as 'meow'")


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run one guided prediction; returns a JSON-ready dict (raises ValueError/FileNotFoundError on bad input)."""
    check_args(args)
    from .classifier import GuidedClassifier

    timings: dict[str, float] = {}
    start = time.perf_counter()
    clf = GuidedClassifier.from_pretrained(args.model, audio_model=args.audio_model)
    timings["load_model_ms"] = 1e3 * (time.perf_counter() - start)
    cue = guide = None
    if args.audio is not None or args.text is not None:
        start = time.perf_counter()
        clf.cues.mapper  # noqa: B018 - load the mapper now, so that its time is reported apart from mapping
        timings["load_mapper_ms"] = 1e3 * (time.perf_counter() - start)
        start = time.perf_counter()
        if args.audio is not None:
            try:
                clf.cues.tagger  # noqa: B018 - load the audio model: a missing one is reported with the CLI's hint
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{err} {OFFLINE_HINT}") from err
            timings["load_audio_model_ms"] = 1e3 * (time.perf_counter() - start)
            start = time.perf_counter()
            cue = clf.cues.audio_cue(args.audio)
            timings["audio_tagging_ms"] = 1e3 * (time.perf_counter() - start)
        else:
            from audio import TextCue

            cue = TextCue(args.text)
        start = time.perf_counter()
        guide = clf.cues.from_cue(cue)
        timings["cue_mapping_ms"] = 1e3 * (time.perf_counter() - start)
    mode = args.mode or ("cutout+attend" if guide is not None else "unguided")
    result = clf.predict(args.image, guide, mode=mode, top_k=args.top_k)
    timings.update(result.timings.to_dict())
    return {"image": args.image, "model": str(args.model), "cue": cue.to_dict() if cue is not None else None,
            **result.to_dict(), "timings": timings}


def format_text(out: dict[str, Any]) -> str:
    """The human-readable report of :func:`main`'s result."""
    lines = [f"image: {out['image']}   model: {out['model']}"]
    if out["cue"] is not None:
        labels = ", ".join(f"{shorten(c['label'])} ({c['score']:.2f})" for c in out["cue"]["labels"])
        lines.append(f"cue ({out['cue']['source']}): {labels}")
    if out["guide"] is not None:
        guide = out["guide"]
        lines.append(f"mapped classes ({len(guide['classes'])}): {guide['classes'][:20]}"
                     f"{' ...' if len(guide['classes']) > 20 else ''}")
        lines.append("gains applied: " + (", ".join(f"{k} x{v:.2f}" for k, v in out["gains"].items()) or "none"))
        lines.append(guide["explanation"])
    mode = out["mode"] + (f" (requested {out['requested_mode']}; fallback: {out['fallback']})" if out["fallback"] else "")
    lines.append(f"mode: {mode}")
    if out["cue_agreement"] is not None:
        lines.append(f"cue agreement: {out['cue_agreement']:.2f} (probability that the image shows a cued class)")
    cost = out["cost"]
    lines.append(f"cost: {cost['params']:,} params, {cost['gmacs']:.3f} GMACs  vs full model "
                 f"{cost['full_params']:,} params, {cost['full_gmacs']:.3f} GMACs  "
                 f"({100 * cost['param_reduction']:.1f} % fewer params, {100 * cost['mac_reduction']:.1f} % fewer GMACs)")
    lines.append("top predictions:")
    lines += [f"  {p['prob']:7.2%}  {p['class_id']:5d}  {p['name']}" for p in out["predictions"]]
    lines.append("timings: " + ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in out["timings"].items()))
    return "\n".join(lines)


def _render(out: dict[str, Any], args: argparse.Namespace) -> str:
    return render_json(out) if args.json else format_text(out)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, _render)


def console() -> None:
    """The installed ``crossmodal`` command: :func:`cli`, then a fast process exit (``xmcommon.cli.exit_process``)."""
    exit_process(cli())


if __name__ == "__main__":
    console()
