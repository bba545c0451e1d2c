"""Train SeqPar models (and timm baselines) with the paper's recipe; one process, one GPU or many.

    python -m vision.train --config configs/imagenette_phl.yaml data.root=/data/imagenette2
    torchrun --nproc_per_node 8 -m vision.train --config configs/imagenet1k_convnextv2_nhl_frozen.yaml
    python -m vision.train --config ... --resume runs/x/last.ckpt

Recipe: timm `create_transform` with RandAugment, softmax cross-entropy over all branch logits
(optionally label-smoothed), SGD or AdamW with linear warmup + cosine decay per step, autocast
bf16/fp16 (GradScaler for fp16), channels-last, optional `torch.compile`, frozen-trunk mode.

Exactness: the augmentation of each sample is seeded by (seed, epoch, index) and the model's RNG
by (seed, rank, step), so a run stopped at any step and resumed from its checkpoint ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from xmcommon.files import atomic_write
from vision.checkpoint import load_checkpoint, save_checkpoint
from vision.cost import parse_classes
from vision.data import ClassSet, EpochSampler, ImageFolderDataset, build_transforms, collate, load_splits
from vision.modelio import build_model, export_model

AMP_MODES = ("auto", "bf16", "fp16", "none")
_SECTIONS = ("data", "model", "optim", "run")


@dataclass(frozen=True)
class DataConfig:
    """Where the ImageFolder tree is and how it is loaded (batch sizes are per process)."""

    root: str = ""
    train_dir: str = "train"
    val_dir: str = "val"
    classes: Any = None  # None | "0-4,7" | list of positions or folder names (train on a subset)
    input_size: int = 224
    batch_size: int = 64
    eval_batch_size: int | None = None
    workers: int = 4
    augment: dict = field(default_factory=lambda: {"auto_augment": "rand-m9-mstd0.5", "interpolation": "bicubic"})


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule: linear warmup then cosine decay to `min_lr`, stepped every iteration."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    epochs: int = 100
    warmup_epochs: float = 5.0
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    grad_clip: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Execution: output folder, seed, precision, memory format, compilation, checkpoint cadence."""

    output_dir: str = "runs/default"
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    checkpoint_every_steps: int = 0
    log_every_steps: int = 20


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run: `data`, `model` (SeqParConfig keys or `arch: timm`), `optim`, `run`."""

    data: DataConfig
    model: dict
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"a training config must be a mapping with data/model/optim/run sections, got {type(raw).__name__}")
        unknown = set(raw) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected data, model, optim, run")
        if "model" not in raw or not isinstance(raw["model"], dict):
            raise ValueError("config needs a 'model' mapping (SeqParConfig keys, or arch: timm + name)")
        sections = {}
        for name, kind in (("data", DataConfig), ("optim", OptimConfig), ("run", RunConfig)):
            values = raw.get(name) or {}
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section '{name}'; known: {sorted(known)}")
            sections[name] = kind(**values)
        cfg = cls(model=dict(raw["model"]), **sections)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.data.root:
            raise ValueError("data.root is required (an ImageFolder tree with train/ and val/)")
        if self.optim.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optim.optimizer must be 'sgd' or 'adamw', got {self.optim.optimizer!r}")
        if self.run.amp not in AMP_MODES:
            raise ValueError(f"run.amp must be one of {AMP_MODES}, got {self.run.amp!r}")
        if self.optim.epochs < 1 or self.data.batch_size < 1:
            raise ValueError(f"optim.epochs and data.batch_size must be >= 1, got {self.optim.epochs}, {self.data.batch_size}")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `section.key=value` or whole-section `section={...}` overrides (YAML values)."""
    raw: dict = {}
    if path is not None:
        raw = _read_yaml_with_base(Path(path))
    for item in overrides:
        dotted, value = item.split("=", 1) if "=" in item else (item, None)
        if value is None or ("." not in dotted and dotted not in _SECTIONS):
            raise ValueError(f"override {item!r} must look like section.key=value (e.g. optim.lr=0.05) "
                             f"or section={{...}} with a section of {_SECTIONS}")
        if "." not in dotted:
            raw[dotted] = yaml.safe_load(value)
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a mapping")
        node[leaf] = yaml.safe_load(value)
    return TrainConfig.from_dict(raw)


def _read_yaml_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A YAML config; a top-level `base: other.yaml` (relative to this file) is read first and deep-merged."""
    if path.resolve() in seen:
        raise ValueError(f"config {path} includes itself through 'base'")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    return _deep_merge(_read_yaml_with_base(path.parent / base, seen + (path.resolve(),)), raw)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# --------------------------------------------------------------------------- distributed helpers


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_kind: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _all_reduce(values: list[float], ctx: Dist, device: torch.device) -> list[float]:
    if ctx.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- building blocks


def resolve_device(name: str, ctx: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    if name != "cpu":
        raise ValueError(f"run.device must be auto, cuda or cpu, got {name!r}")
    return torch.device("cpu")


def amp_settings(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed)."""
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if mode == "none":
        return None, False
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("run.amp 'fp16' needs a CUDA device; use 'bf16' or 'none' on the CPU")
    return (torch.bfloat16, False) if mode == "bf16" else (torch.float16, True)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup from 1/warmup_steps to 1, then cosine decay from 1 to `min_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD/AdamW over trainable parameters only; no weight decay on biases and norm weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [int(v) for v in np.random.get_state()[1]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), 624, 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class EpochStats:
    loss: float
    top1: float
    top5: float | None
    images: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, device: torch.device, ctx: Dist, *, amp_dtype=None,
                    channels_last: bool = False, label_smoothing: float = 0.0) -> EpochStats:
    """Mean loss, top-1/top-5 (%) over the loader, summed across ranks (no duplicated samples)."""
    model.eval()
    loss_sum = correct1 = correct5 = n = 0.0
    num_classes = None
    for images, targets, _ in loader:
        images, targets = _to_device(images, targets, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        logits = logits.float()
        num_classes = logits.shape[1]
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum", label_smoothing=label_smoothing).item()
        topk = logits.topk(min(5, num_classes), dim=1).indices
        correct1 += (topk[:, 0] == targets).sum().item()
        correct5 += (topk == targets[:, None]).any(dim=1).sum().item()
        n += targets.numel()
    loss_sum, correct1, correct5, n = _all_reduce([loss_sum, correct1, correct5, n], ctx, device)
    if n == 0:
        raise ValueError("the evaluation set is empty")
    has_top5 = num_classes is not None and num_classes > 10
    return EpochStats(loss_sum / n, 100.0 * correct1 / n, 100.0 * correct5 / n if has_top5 else None, int(n))


def _to_device(images, targets, device, channels_last):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def _loader(dataset, sampler, batch_size: int, workers: int, device: torch.device, drop_last: bool):
    """Workers persist across epochs: the sampler (main process) carries the epoch into each index."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       collate_fn=collate, pin_memory=device.type == "cuda", drop_last=drop_last,
                                       persistent_workers=workers > 0)


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished (or stopped) run."""

    output_dir: str
    epochs_done: int
    global_step: int
    final_val: dict | None
    best_val_top1: float | None
    model_dir: str | None
    stopped_early: bool
    skipped_images: int
    classes: dict

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    """Resuming must not change what is trained or how (only run.* execution settings may differ)."""
    now = cfg.to_dict()
    diffs = [f"{sec}.{k}" for sec in ("data", "model", "optim")
             for k in set(saved[sec]) | set(now[sec]) if saved[sec].get(k) != now[sec].get(k)
             and (sec, k) not in {("data", "root"), ("data", "workers")}]
    if saved["run"]["seed"] != now["run"]["seed"]:
        diffs.append("run.seed")
    if diffs:
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {sorted(diffs)}")


def build_datasets(data: DataConfig, *, seed: int = 0) -> tuple[ClassSet, ImageFolderDataset, ImageFolderDataset]:
    """The class set (optionally filtered by `data.classes`) and the train/val datasets with timm transforms."""
    spec = parse_classes(data.classes) if isinstance(data.classes, str) else data.classes
    classes = load_splits(data.root, train_dir=data.train_dir, val_dir=data.val_dir, classes=spec)
    root = Path(data.root)
    train_ds = ImageFolderDataset(root / data.train_dir, classes,
                                  build_transforms(data.input_size, is_training=True, augment=data.augment), seed=seed)
    val_ds = ImageFolderDataset(root / data.val_dir, classes,
                                build_transforms(data.input_size, is_training=False, augment=data.augment))
    return classes, train_ds, val_ds


def train(cfg: TrainConfig, *, resume: str | Path | None = None, dry_run: bool = False,
          stop_after_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Run (or resume) training as `cfg` says; rank 0 logs, checkpoints and exports the model."""
    device_kind = "cuda" if cfg.run.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    ctx = setup_distributed(device_kind)
    device = resolve_device(cfg.run.device, ctx)
    amp_dtype, needs_scaler = amp_settings(cfg.run.amp, device)
    out = Path(cfg.run.output_dir)

    classes, train_ds, val_ds = build_datasets(cfg.data, seed=cfg.run.seed)
    steps_per_epoch = (len(train_ds) // ctx.world_size) // cfg.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training images are fewer than one batch of {cfg.data.batch_size} "
                         f"per process x {ctx.world_size} processes; lower data.batch_size")
    total_steps = steps_per_epoch * cfg.optim.epochs

    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, classes, {"dataset": classes.to_dict(), "train_config": cfg.to_dict()},
                        image_size=cfg.data.input_size)
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    warmup_steps = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Schedule(warmup_steps, total_steps, cfg.optim.min_lr / cfg.optim.lr))
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)

    start_epoch, start_step_in_epoch, global_step, best_top1, resumed_sums = 0, 0, 0, None, [0.0] * 4
    if resume is not None:
        ckpt = load_checkpoint(resume)
        _check_resume_config(ckpt["config"], cfg)
        for name, part in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
            part.load_state_dict(ckpt[name])
        set_rng_state(ckpt["rng"])
        start_epoch, start_step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        global_step, best_top1, resumed_sums = ckpt["global_step"], ckpt["best_val_top1"], ckpt["epoch_sums"]

    train_model: nn.Module = model
    if ctx.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.run.compile:
        train_model = torch.compile(train_model)

    def checkpoint_state(epoch: int, step_in_epoch: int, epoch_sums: list[float]) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_state(), "epoch": epoch, "step_in_epoch": step_in_epoch,
                "global_step": global_step, "best_val_top1": best_top1, "epoch_sums": epoch_sums,
                "config": cfg.to_dict()}

    if ctx.is_main and not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    train_sampler = EpochSampler(len(train_ds), shuffle=True, seed=cfg.run.seed, rank=ctx.rank, world_size=ctx.world_size)
    val_sampler = EpochSampler(len(val_ds), shuffle=False, rank=ctx.rank, world_size=ctx.world_size, drop_last=False)
    val_loader = _loader(val_ds, val_sampler, cfg.data.eval_batch_size or cfg.data.batch_size, cfg.data.workers, device, False)
    train_loader = _loader(train_ds, train_sampler, cfg.data.batch_size, cfg.data.workers, device, True)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

    final_val, stopped, skipped_total, epochs_done = None, False, 0, start_epoch
    epochs = range(start_epoch, start_epoch + 1) if dry_run else range(start_epoch, cfg.optim.epochs)
    for epoch in epochs:
        first = start_step_in_epoch if epoch == start_epoch else 0
        train_sampler.set_epoch(epoch, start=first * cfg.data.batch_size)
        train_model.train()
        sums = resumed_sums if epoch == start_epoch and first and ctx.is_main else [0.0] * 4
        loss_sum, correct, seen, skipped = (torch.tensor(v, dtype=torch.float64, device=device) for v in sums)
        t0 = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   disable=not (progress and ctx.is_main), dynamic_ncols=True, leave=False)
        for i, (images, targets, n_bad) in enumerate(train_loader, start=first):
            images, targets = _to_device(images, targets, device, cfg.run.channels_last)
            torch.manual_seed(_step_seed(cfg.run.seed, ctx.rank, global_step))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = train_model(images)
                loss = criterion(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            global_step += 1
            loss_sum += loss.detach().double() * targets.numel()
            correct += (logits.detach().argmax(1) == targets).sum()
            seen += targets.numel()
            skipped += n_bad
            bar.update(1)
            if (i + 1) % cfg.run.log_every_steps == 0 or dry_run:
                n_seen = float(seen)
                if not needs_scaler and not math.isfinite(float(loss_sum)):  # fp16 skips bad steps itself
                    raise FloatingPointError(f"the training loss became {float(loss_sum)} by step {global_step} "
                                             f"(epoch {epoch + 1}); lower optim.lr or resume from {out / 'last.ckpt'}")
                bar.set_postfix(loss=f"{float(loss_sum) / n_seen:.3f}", acc=f"{100 * float(correct) / n_seen:.1f}",
                                img_s=f"{(i + 1 - first) * cfg.data.batch_size * ctx.world_size / (time.perf_counter() - t0):.0f}",
                                lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if dry_run and i + 1 - first >= 2:
                break
            stop_now = stop_after_steps is not None and global_step >= stop_after_steps and i + 1 < steps_per_epoch
            periodic = cfg.run.checkpoint_every_steps and global_step % cfg.run.checkpoint_every_steps == 0
            if not dry_run and i + 1 < steps_per_epoch and (periodic or stop_now):
                # global running sums: rank 0 restores them on resume, the other ranks restart from zero
                sums_now = _all_reduce([float(loss_sum), float(correct), float(seen), float(skipped)], ctx, device)
                if ctx.is_main:
                    save_checkpoint(checkpoint_state(epoch, i + 1, sums_now), out / "last.ckpt")
            if stop_now:
                stopped = True
                break
        bar.close()
        elapsed = time.perf_counter() - t0
        if stopped:
            break
        loss_sum, correct, seen, skipped = _all_reduce([float(loss_sum), float(correct), float(seen), float(skipped)], ctx, device)
        skipped_total += int(skipped)
        if dry_run:
            final_val = evaluate_loader(model, _take(val_loader, 2), device, ctx, amp_dtype=amp_dtype,
                                        channels_last=cfg.run.channels_last).to_dict()
            break
        val = evaluate_loader(model, val_loader, device, ctx, amp_dtype=amp_dtype, channels_last=cfg.run.channels_last)
        final_val = val.to_dict()
        is_best = best_top1 is None or val.top1 > best_top1
        best_top1 = val.top1 if is_best else best_top1
        epochs_done = epoch + 1
        record = {"epoch": epochs_done, "global_step": global_step, "lr": scheduler.get_last_lr()[0],
                  "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
                  "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5, "val_images": val.images,
                  "images_per_s": (steps_per_epoch - first) * cfg.data.batch_size * ctx.world_size / elapsed,
                  "epoch_time_s": elapsed, "skipped_images": int(skipped)}
        if ctx.is_main:
            if skipped:
                print(f"warning: epoch {epochs_done} skipped {int(skipped)} unreadable training image(s)", file=sys.stderr)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(checkpoint_state(epochs_done, 0, [0.0, 0.0, 0.0, 0.0]), out / "last.ckpt")
            if is_best:
                _atomic_copy(out / "last.ckpt", out / "best.ckpt")
        if stop_after_steps is not None and global_step >= stop_after_steps and epochs_done < cfg.optim.epochs:
            stopped = True
            break

    model_dir = None
    if ctx.is_main and not dry_run and not stopped:
        model_dir = str(export_model(_unwrap(model), out / "model"))
    if ctx.world_size > 1:
        dist.barrier()
    return TrainResult(str(out), epochs_done, global_step, final_val, best_top1, model_dir, stopped, skipped_total,
                       classes.to_dict())


class _Schedule:
    """Picklable, JSON-serialisable per-step LR factor (LambdaLR saves callable objects' __dict__)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, warmup_steps=self.warmup_steps, total_steps=self.total_steps, min_ratio=self.min_ratio)


def _take(loader, n: int):
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch


def _atomic_copy(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a SeqPar model (or a timm baseline) on an ImageFolder dataset.")
    p.add_argument("--config", required=True, help="YAML config with data/model/optim/run sections")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.root=/data optim.lr=0.05")
    p.add_argument("--resume", help="checkpoint to continue from (e.g. runs/x/last.ckpt)")
    p.add_argument("--dry-run", action="store_true", help="build everything, run 2 training steps and 2 val batches, write nothing")
    p.add_argument("--stop-after-steps", type=int, help="checkpoint and exit after this many optimizer steps (e.g. to fit a job slot)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def main(args: argparse.Namespace) -> dict:
    cfg = load_config(args.config, args.overrides)
    return train(cfg, resume=args.resume, dry_run=args.dry_run, stop_after_steps=args.stop_after_steps,
                 progress=not args.no_progress).to_dict()


if __name__ == "__main__":
    try:
        result = main(get_args_parser().parse_args())
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
