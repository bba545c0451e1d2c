"""Which pooling of YAMNet's window scores gives better tags on the 24 shared clips: mean or max.

    python -m benchmarks.audio_pooling            (from the repository root; needs ../shared/data/audio)

Each clip's name says what it is; EXPECTED lists the YAMNet labels that name it (the source or its sound). Per
pooling: the best rank of an expected label in the clip's pooled scores, top-1 / top-3 hits and the mean
reciprocal rank over the clips, with silent windows dropped (the tagger's default) and kept; then the top 3
tags of every clip with the tagger's defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from audio import AudioTagger
from xmcommon.cli import exit_process, run_cli

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
EXPECTED = {
    "car_horn": ["Vehicle horn, car horn, honking"], "cat": ["Cat", "Meow"], "clapping": ["Clapping"],
    "crow": ["Crow", "Caw"], "dog": ["Dog", "Bark"], "sea_waves": ["Ocean", "Waves, surf"],
    "bee": ["Bee, wasp, etc.", "Buzz"], "blackcat": ["Cat", "Meow"], "cow": ["Cattle, bovinae", "Moo"],
    "cymbal_crash": ["Cymbal"], "duck": ["Duck", "Quack"], "fireworks": ["Fireworks"],
    "frog": ["Frog", "Croak"], "hen": ["Chicken, rooster", "Cluck"], "horse": ["Horse", "Neigh, whinny"],
    "kettle": ["Boiling", "Whistle"], "lion": ["Roaring cats (lions, tigers)", "Roar"], "owl": ["Owl", "Hoot"],
    "pig": ["Pig", "Oink"], "rooster": ["Chicken, rooster", "Crowing, cock-a-doodle-doo"],
    "sheep": ["Sheep", "Bleat"], "toilet": ["Toilet flush"], "vacuum_cleaner": ["Vacuum cleaner"],
}


def best_rank(scores, labels: tuple[str, ...], expected: list[str]) -> int:
    order = list((-scores).argsort(kind="stable"))
    return 1 + min(order.index(labels.index(name)) for name in expected)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=SHARED_AUDIO, help="folder with esc50/ and tuxpaint/ clips")
    return parser


def main(args: argparse.Namespace) -> dict:
    clips = sorted(args.audio.glob("*/*.*"))
    if len(clips) != 24:
        raise FileNotFoundError(f"{args.audio}: expected the 24 shared clips, found {len(clips)}")
    torch.set_num_threads(2)
    tagger = AudioTagger.from_pretrained("yamnet")
    rows, summary = [], {}
    for clip in clips:
        row = {"clip": f"{clip.parent.name}/{clip.name}"}
        for pooling in ("mean", "max"):
            for drop in (True, False):
                scores = tagger.scores(clip, pooling=pooling, drop_silence=drop)
                row[f"{pooling}{'' if drop else '+silence'}"] = best_rank(scores, tagger.labels, EXPECTED[clip.stem])
        row["top3"] = [(t.label, round(t.score, 3)) for t in tagger(clip, top_k=3)]
        rows.append(row)
    for key in ("mean", "max", "mean+silence", "max+silence"):
        ranks = [row[key] for row in rows]
        summary[key] = {"top1": sum(r == 1 for r in ranks), "top3": sum(r <= 3 for r in ranks),
                        "mrr": round(sum(1 / r for r in ranks) / len(ranks), 3)}
    return {"summary": summary, "clips": rows}


def render(result: dict, args: argparse.Namespace) -> str:
    lines = ["| pooling | expected label top-1 | top-3 | mean reciprocal rank |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['top1']}/24 | {v['top3']}/24 | {v['mrr']:.3f} |" for k, v in result["summary"].items()]
    lines += ["", "| clip | rank (mean / max) | top 3 (defaults) |", "|---|---|---|"]
    for row in result["clips"]:
        top = ", ".join(f"{label} {score:.2f}" for label, score in row["top3"])
        lines.append(f"| {row['clip']} | {row['mean']} / {row['max']} | {top} |")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render=render)


if __name__ == "__main__":
    exit_process(cli())
