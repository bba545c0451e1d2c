"""Write the packaged sentence embeddings of the default mapper: the 1000 ImageNet class texts and the
AudioSet label names under all-MiniLM-L6-v2 (``mappings/data/embeddings``), so that a first start with an
empty user cache embeds nothing. Each file is named and tagged by the model and the sha256 of its texts;
changed texts or another model simply miss it. Rerun after changing the class texts or the model::

    HF_HUB_OFFLINE=1 python scripts/make_text_embeddings.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mappings.embeddings import DEFAULT_MODEL, PACKAGED_DIR, TextEncoder
from mappings.mapper import CueMapper, MapperConfig
from xmcommon.cli import exit_process, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(PACKAGED_DIR), help="folder of the packaged embeddings")
    return parser


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)  # one thread: the same sums on every run
    encoder = TextEncoder(model_name=DEFAULT_MODEL)
    mapper = CueMapper(MapperConfig(model=DEFAULT_MODEL), encoder=encoder)
    out = Path(args.out)
    old = set(out.glob("*.safetensors"))
    written = [encoder.write_packaged(texts, out) for texts in mapper.embedded_texts()]
    for stale in old - set(written):
        stale.unlink()
    return {"written": [str(p) for p in written]}


if __name__ == "__main__":
    exit_process(run_cli(get_args_parser(), main))
