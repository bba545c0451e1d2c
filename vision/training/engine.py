"""The training engine: the paper's recipe on one process, one GPU or many (torchrun), exactly resumable.

Recipe: timm's data pipeline with RandAugment, softmax cross-entropy over all branch logits (optionally
label-smoothed), SGD or AdamW with linear warmup + cosine decay per step, autocast bf16/fp16 (GradScaler
for fp16), channels-last, optional ``torch.compile``, frozen-trunk mode.

Exactness: the augmentation of each sample is seeded by (seed, epoch, index) and the model's RNG by
(seed, rank, step), so a run stopped at any step and resumed from its checkpoint ends with the same
weights as an uninterrupted run. :func:`train` is :func:`setup`, then :meth:`Run.resume`, then per epoch
:meth:`Run.train_epoch` and :meth:`Run.validate`, and :meth:`Run.export`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from xmcommon.files import atomic_write
from xmcommon.ids import parse_ids

from ..data.folder import ClassSet, EpochSampler, ImageFolderDataset, collate, load_splits
from ..data.transforms import eval_transform, train_transform
from ..distributed import Dist, all_reduce_sum, barrier, resolve_device, setup_distributed
from ..eval.metrics import hits_at_k, rank
from .checkpoint import load_checkpoint, save_checkpoint
from .config import OptimConfig, TrainConfig
from .models import build_model


class DivergedError(ValueError):
    """The training loss became NaN or infinite: the run's settings (usually the learning rate) do not work."""


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


class _Schedule:
    """Picklable, JSON-serialisable per-step LR factor (LambdaLR saves callable objects' __dict__)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, warmup_steps=self.warmup_steps, total_steps=self.total_steps, min_ratio=self.min_ratio)


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
        ranked = rank(logits, 5)
        correct1 += hits_at_k(ranked, targets, 1).sum().item()
        correct5 += hits_at_k(ranked, targets, 5).sum().item()
        n += targets.numel()
    loss_sum, correct1, correct5, n = all_reduce_sum([loss_sum, correct1, correct5, n], ctx, device)
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


def build_datasets(cfg: TrainConfig, model: nn.Module, classes: ClassSet) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The train / val datasets of ``classes``: timm's augmentation, and the model's own eval transform."""
    root, data = Path(cfg.data.root), cfg.data
    train_ds = ImageFolderDataset(root / data.train_dir, classes, train_transform(model.data_config(), data.augment),
                                  seed=cfg.run.seed)
    val_ds = ImageFolderDataset(root / data.val_dir, classes, eval_transform(model.data_config()))
    return train_ds, val_ds


@dataclass
class Progress:
    """Where a run is: the position to continue from, and the running sums of the epoch in progress."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float | None = None
    epoch_sums: list[float] = field(default_factory=lambda: [0.0] * 4)  # loss, correct, seen, skipped
    epochs_done: int = 0
    skipped_total: int = 0
    stopped: bool = False
    final_val: dict | None = None


@dataclass(frozen=True)
class EpochOutcome:
    """What one epoch of training summed over all processes: (loss, correct, seen, skipped), and its pace."""

    sums: list[float]
    first_step: int  # the step this epoch started from (> 0 when resumed mid-epoch)
    seconds: float


@dataclass
class Run:
    """Everything a training run builds once (see :func:`setup`)."""

    cfg: TrainConfig
    ctx: Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    needs_scaler: bool
    classes: ClassSet
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_sampler: EpochSampler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    steps_per_epoch: int
    progress: Progress = field(default_factory=Progress)

    @property
    def out(self) -> Path:
        return Path(self.cfg.run.output_dir)

    def checkpoint_state(self, epoch: int, step_in_epoch: int, epoch_sums: list[float]) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": self.progress.global_step,
                "best_val_top1": self.progress.best_top1, "epoch_sums": epoch_sums, "config": self.cfg.to_dict()}

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, scaler, RNGs and position."""
        ckpt = load_checkpoint(path)
        _check_resume_config(ckpt["config"], self.cfg)
        for name, part in (("model", self.model), ("optimizer", self.optimizer), ("scheduler", self.scheduler),
                           ("scaler", self.scaler)):
            part.load_state_dict(ckpt[name])
        set_rng_state(ckpt["rng"])
        self.progress = Progress(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"], ckpt["best_val_top1"],
                                 ckpt["epoch_sums"], epochs_done=ckpt["epoch"])

    def train_epoch(self, epoch: int, *, dry_run: bool, stop_after_steps: int | None, show: bool) -> EpochOutcome | None:
        """One epoch (from the resume position), checkpointing as configured; ``None`` (and
        ``progress.stopped``) when ``stop_after_steps`` cut it short."""
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        first = p.step_in_epoch if epoch == p.epoch else 0
        self.train_sampler.set_epoch(epoch, start=first * cfg.data.batch_size)
        self.train_model.train()
        sums = p.epoch_sums if epoch == p.epoch and first and ctx.is_main else [0.0] * 4
        loss_sum, correct, seen, skipped = (torch.tensor(v, dtype=torch.float64, device=self.device) for v in sums)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        t0 = time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   disable=not show, dynamic_ncols=True, leave=False)
        for i, (images, targets, n_bad) in enumerate(self.train_loader, start=first):
            images, targets = _to_device(images, targets, self.device, cfg.run.channels_last)
            logits, loss = self._step(images, targets, criterion)
            loss_sum += loss.detach().double() * targets.numel()
            correct += hits_at_k(logits.detach().argmax(1, keepdim=True), targets, 1).sum()
            seen += targets.numel()
            skipped += n_bad
            bar.update(1)
            if (i + 1) % cfg.run.log_every_steps == 0 or dry_run:
                self._check_finite(float(loss_sum), epoch)
                bar.set_postfix(loss=f"{float(loss_sum) / float(seen):.3f}", acc=f"{100 * float(correct) / float(seen):.1f}",
                                img_s=f"{(i + 1 - first) * cfg.data.batch_size * ctx.world_size / (time.perf_counter() - t0):.0f}",
                                lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if dry_run and i + 1 - first >= 2:
                break
            stop_now = stop_after_steps is not None and p.global_step >= stop_after_steps and i + 1 < self.steps_per_epoch
            periodic = cfg.run.checkpoint_every_steps and p.global_step % cfg.run.checkpoint_every_steps == 0
            if not dry_run and i + 1 < self.steps_per_epoch and (periodic or stop_now):
                # global running sums: rank 0 restores them on resume, the other ranks restart from zero
                sums_now = all_reduce_sum([float(loss_sum), float(correct), float(seen), float(skipped)], ctx, self.device)
                if ctx.is_main:
                    save_checkpoint(self.checkpoint_state(epoch, i + 1, sums_now), self.out / "last.ckpt")
            if stop_now:
                p.stopped = True
                break
        bar.close()
        if p.stopped:
            return None
        sums = all_reduce_sum([float(loss_sum), float(correct), float(seen), float(skipped)], ctx, self.device)
        return EpochOutcome(sums, first, time.perf_counter() - t0)

    def _step(self, images: torch.Tensor, targets: torch.Tensor, criterion: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step, its RNG seeded by (seed, rank, step)."""
        torch.manual_seed(_step_seed(self.cfg.run.seed, self.ctx.rank, self.progress.global_step))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.train_model(images)
            loss = criterion(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([q for q in self.model.parameters() if q.requires_grad], self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.progress.global_step += 1
        return logits, loss

    def _check_finite(self, loss_sum: float, epoch: int) -> None:
        if not self.needs_scaler and not math.isfinite(loss_sum):  # fp16 skips bad steps itself
            raise DivergedError(f"the training loss became {loss_sum} by step {self.progress.global_step} "
                                f"(epoch {epoch + 1}); lower optim.lr or resume from {self.out / 'last.ckpt'}")

    def validate(self, batches: int | None = None) -> EpochStats:
        """Loss and top-1/top-5 on the validation set (its first ``batches`` batches when given)."""
        loader = self.val_loader if batches is None else _take(self.val_loader, batches)
        return evaluate_loader(self.model, loader, self.device, self.ctx, amp_dtype=self.amp_dtype,
                               channels_last=self.cfg.run.channels_last)

    def end_epoch(self, epoch: int, outcome: EpochOutcome, val: EpochStats) -> None:
        """Log the epoch, checkpoint it and keep the best checkpoint (rank 0 writes)."""
        p, cfg = self.progress, self.cfg
        loss_sum, correct, seen, skipped = outcome.sums
        is_best = p.best_top1 is None or val.top1 > p.best_top1
        p.best_top1 = val.top1 if is_best else p.best_top1
        p.epochs_done = epoch + 1
        record = {"epoch": p.epochs_done, "global_step": p.global_step, "lr": self.scheduler.get_last_lr()[0],
                  "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
                  "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5, "val_images": val.images,
                  "images_per_s": (self.steps_per_epoch - outcome.first_step) * cfg.data.batch_size
                  * self.ctx.world_size / outcome.seconds, "epoch_time_s": outcome.seconds,
                  "skipped_images": int(skipped)}
        if self.ctx.is_main:
            if skipped:
                print(f"warning: epoch {p.epochs_done} skipped {int(skipped)} unreadable training image(s)",
                      file=sys.stderr)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(self.checkpoint_state(p.epochs_done, 0, [0.0, 0.0, 0.0, 0.0]), self.out / "last.ckpt")
            if is_best:
                atomic_write(self.out / "best.ckpt", lambda tmp: shutil.copyfile(self.out / "last.ckpt", tmp))

    def export(self) -> str:
        """Save the trained model (``save_pretrained``) to ``output_dir/model``; returns the directory."""
        directory = self.out / "model"
        _unwrap(self.model).save_pretrained(directory)
        return str(directory)


def setup(cfg: TrainConfig) -> Run:
    """Build everything a run needs: process group, device, data, model, optimizer, schedule, loaders."""
    device_kind = "cuda" if cfg.run.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    ctx = setup_distributed(device_kind)
    device = resolve_device(cfg.run.device, ctx)
    amp_dtype, needs_scaler = amp_settings(cfg.run.amp, device)
    spec = parse_ids(cfg.data.classes, what="data.classes") if isinstance(cfg.data.classes, str) else cfg.data.classes
    classes = load_splits(cfg.data.root, train_dir=cfg.data.train_dir, val_dir=cfg.data.val_dir, classes=spec)

    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, classes, {"dataset": classes.to_dict(), "train_config": cfg.to_dict()},
                        image_size=cfg.data.input_size, augment=cfg.data.augment)
    train_ds, val_ds = build_datasets(cfg, model, classes)
    steps_per_epoch = (len(train_ds) // ctx.world_size) // cfg.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training images are fewer than one batch of {cfg.data.batch_size} "
                         f"per process x {ctx.world_size} processes; lower data.batch_size")
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    warmup_steps = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _Schedule(warmup_steps, steps_per_epoch * cfg.optim.epochs, cfg.optim.min_lr / cfg.optim.lr))
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)
    train_model: nn.Module = model
    if ctx.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.run.compile:
        train_model = torch.compile(train_model)
    train_sampler = EpochSampler(len(train_ds), shuffle=True, seed=cfg.run.seed, rank=ctx.rank, world_size=ctx.world_size)
    val_sampler = EpochSampler(len(val_ds), shuffle=False, rank=ctx.rank, world_size=ctx.world_size, drop_last=False)
    val_loader = _loader(val_ds, val_sampler, cfg.data.eval_batch_size or cfg.data.batch_size, cfg.data.workers, device, False)
    train_loader = _loader(train_ds, train_sampler, cfg.data.batch_size, cfg.data.workers, device, True)
    return Run(cfg, ctx, device, amp_dtype, needs_scaler, classes, model, train_model, optimizer, scheduler, scaler,
               train_sampler, train_loader, val_loader, steps_per_epoch)


def train(cfg: TrainConfig, *, resume: str | Path | None = None, dry_run: bool = False,
          stop_after_steps: int | None = None, progress: bool = True) -> TrainResult:
    """Run (or resume) training as ``cfg`` says; rank 0 logs, checkpoints and exports the model."""
    run = setup(cfg)
    if resume is not None:
        run.resume(resume)
    p = run.progress
    if run.ctx.is_main and not dry_run:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    start = p.epoch
    for epoch in (range(start, start + 1) if dry_run else range(start, cfg.optim.epochs)):
        outcome = run.train_epoch(epoch, dry_run=dry_run, stop_after_steps=stop_after_steps,
                                  show=progress and run.ctx.is_main)
        if outcome is None:
            break
        p.skipped_total += int(outcome.sums[3])
        if dry_run:
            p.final_val = run.validate(batches=2).to_dict()
            break
        val = run.validate()
        p.final_val = val.to_dict()
        run.end_epoch(epoch, outcome, val)
        if stop_after_steps is not None and p.global_step >= stop_after_steps and p.epochs_done < cfg.optim.epochs:
            p.stopped = True
            break
    model_dir = run.export() if run.ctx.is_main and not dry_run and not p.stopped else None
    barrier(run.ctx)
    return TrainResult(str(run.out), p.epochs_done, p.global_step, p.final_val, p.best_top1, model_dir, p.stopped,
                       p.skipped_total, run.classes.to_dict())


def _take(loader, n: int):
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch
