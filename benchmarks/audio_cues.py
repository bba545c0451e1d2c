"""Sound cues end to end on the 24 shared clips: tagger -> mapper -> guide, scored against benchmarks/data/audio_cues.yaml.

    HF_HUB_OFFLINE=1 python -m benchmarks.audio_cues --backend yamnet [--json FILE]

Per clip: the best tags, the guide's classes (or the reason it abstains) and a verdict: **right** (the guide holds
every class the sound's source may be), **right abstain** (no ImageNet counterpart and no guide), **missed** (a
source class exists, no guide) or **wrong** (a guide without the source, or any guide where there is none). The
bar (the product is also scored on clips we do not have): right for >= 40 % of the clips with an ImageNet source,
wrong for <= 6 % of all clips, right abstain for >= 85 % of the clips without one.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from audio import AudioTagger
from benchmarks.common import (
    SHARED_DATA,
    add_json_argument,
    machine,
    machine_line,
    markdown_table,
    write_json,
)
from mappings import CueMapper, Guide
from mappings.evaluation import expand_classes
from mappings.guide import SILENT
from mappings.wordnet import WordNetHierarchy
from xmcommon.cli import exit_process, run_cli

TRUTH = Path(__file__).with_name("data") / "audio_cues.yaml"
SHARED_AUDIO = SHARED_DATA / "audio"
VERDICTS = ("right", "right abstain", "missed", "wrong")
BAR = {"right_of_sourced": 0.40, "wrong_of_all": 0.06, "right_abstain_of_sourceless": 0.85}


def load_truth(path: str | Path, hierarchy: WordNetHierarchy) -> dict[str, frozenset[int] | None]:
    """``clip -> expected classes``, None where the source has no ImageNet class (``expect: abstain``)."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    truth: dict[str, frozenset[int] | None] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"clip", "expect"}:
            raise ValueError(f"{path} entry {i}: expected the keys 'clip' and 'expect', got {entry!r}")
        expect = entry["expect"]
        if expect != "abstain" and not (isinstance(expect, list) and expect):
            raise ValueError(f"{path} entry {i}: expect must be 'abstain' or a non-empty list, got {expect!r}")
        truth[entry["clip"]] = None if expect == "abstain" else expand_classes(expect, hierarchy, f"{path} entry {i}")
    return truth


def verdict(guide: Guide, expected: frozenset[int] | None) -> str:
    """One of :data:`VERDICTS` for a guide against the expected classes (None: the source has none)."""
    if expected is None:
        return "wrong" if guide.confident else "right abstain"
    if not guide.confident:
        return "missed"
    return "right" if expected <= set(guide.classes) else "wrong"


def totals(verdicts: Iterable[str], truth: Mapping[str, frozenset[int] | None]) -> dict:
    """Counts per verdict, the three rates of the bar and whether each meets it."""
    counts = Counter(verdicts)
    sourced = sum(v is not None for v in truth.values())
    sourceless = len(truth) - sourced
    rates = {"right_of_sourced": counts["right"] / sourced if sourced else None,
             "wrong_of_all": counts["wrong"] / len(truth) if truth else None,
             "right_abstain_of_sourceless": counts["right abstain"] / sourceless if sourceless else None}
    meets = {key: rate is None or (rate <= BAR[key] if key == "wrong_of_all" else rate >= BAR[key])
             for key, rate in rates.items()}
    return {"counts": {v: counts[v] for v in VERDICTS}, "clips": len(truth), "sourced": sourced,
            "sourceless": sourceless, "rates": rates, "meets_bar": meets}


def score_clips(tagger: AudioTagger, mapper: CueMapper, audio_dir: Path,
                truth: Mapping[str, frozenset[int] | None]) -> list[dict]:
    """Tag, map and judge every clip of ``truth`` (paths relative to ``audio_dir``)."""
    rows = []
    for clip, expected in truth.items():
        path = audio_dir / clip
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (clip of {TRUTH.name})")
        cue = tagger.cue(path, top_k=mapper.config.tag_top_k)
        guide = Guide.abstain(["digital silence"], source="audio", reason=SILENT) if cue is None else mapper.map(cue)
        rows.append({"clip": clip, "tags": [] if cue is None else [list(pair) for pair in cue.labels],
                     "classes": list(guide.classes), "reason": guide.reason,
                     "expected": None if expected is None else sorted(expected), "verdict": verdict(guide, expected)})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="yamnet", help="audio tagger: a registered name, a directory or a hub id")
    parser.add_argument("--audio", type=Path, default=SHARED_AUDIO, help="folder holding the clips of --truth")
    parser.add_argument("--truth", type=Path, default=TRUTH, help="clips with their expected classes")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: the user cache dir)")
    add_json_argument(parser)
    return parser


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    mapper = CueMapper.default(cache_dir=args.cache_dir)
    truth = load_truth(args.truth, mapper.hierarchy)
    rows = score_clips(AudioTagger.from_pretrained(args.backend), mapper, args.audio, truth)
    result = {"backend": args.backend, "rules": asdict(mapper.config.tag_rules), "machine": machine(),
              "totals": totals((row["verdict"] for row in rows), truth), "rows": rows}
    write_json(args.json, result)
    return result


def render(result: dict, args: argparse.Namespace) -> str:
    def guide_cell(row: dict) -> str:
        if not row["classes"]:
            return f"abstain ({row['reason'] or 'no reason given'})"
        shown = ", ".join(map(str, row["classes"][:5]))
        return shown + (f" (+{len(row['classes']) - 5})" if len(row["classes"]) > 5 else "")

    rows = [(row["clip"], ", ".join(f"{label} {score:.2f}" for label, score in row["tags"][:4]), guide_cell(row),
             row["verdict"]) for row in result["rows"]]
    t = result["totals"]
    rates = t["rates"]
    summary = [("right", f"{t['counts']['right']}/{t['sourced']}", f"{rates['right_of_sourced']:.0%}", ">= 40 %",
                t["meets_bar"]["right_of_sourced"]),
               ("wrong", f"{t['counts']['wrong']}/{t['clips']}", f"{rates['wrong_of_all']:.0%}", "<= 6 %",
                t["meets_bar"]["wrong_of_all"]),
               ("right abstain", f"{t['counts']['right abstain']}/{t['sourceless']}",
                f"{rates['right_abstain_of_sourceless']:.0%}", ">= 85 %", t["meets_bar"]["right_abstain_of_sourceless"]),
               ("missed", f"{t['counts']['missed']}/{t['sourced']}", "", "", None)]
    return "\n\n".join([f"backend {result['backend']}, rules {result['rules']}; {machine_line(result['machine'])}",
                        markdown_table(("clip", "top tags", "guide", "verdict"), rows),
                        markdown_table(("verdict", "clips", "rate", "bar", "meets"), summary)])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render=render)


if __name__ == "__main__":
    exit_process(cli())
