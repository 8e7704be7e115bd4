"""The training loop: one or two timm networks, a noisy-label method, ASL. No Ray import here.

`Trainer(cfg).run(report, log)` trains one configuration and calls `report(metrics, checkpoint_dir)`
once per epoch: `mhss-train` passes a function that writes its run folder, a Tune trial one that calls
`ray.tune.report` or `ray.train.report` (tune/driver.py); `fit` wraps both calls with an optional resume.
A run resumes from any checkpoint it wrote (networks, EMA, optimiser, scheduler,
RNG, method state, epoch) and then continues exactly as an uninterrupted run with the same seed.

When a torch.distributed process group is up (Ray Train with several workers), the networks are
wrapped in DDP, each worker trains on its slice of every global batch, and the method sees the
gathered global batch (distributed.py); only the first worker evaluates, logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import OptimConfig, RunConfig, RuntimeConfig, round_starts
from ..data import DataBundle, build_dataset
from ..data.decode_cache import open_split_caches
from ..data.images import original_index
from ..noise import NoisyLabels, inject_noise
from ..errors import TrainingDiverged, UserError
from ..methods import Batch, Method, build_method
from .batching import EvenBatches
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import World, state_digest
from .metrics import best_thresholds, classification_metrics, sewer_metrics
from .models import check_input_size, create_ema, create_network

ReportFn = Callable[[dict, Optional[str]], None]  # (metrics, checkpoint folder or None)
PROGRESS_S = 30.0  # progress lines of long predictions, at most this often
MethodFactory = Callable[[RunConfig, torch.Tensor, torch.Tensor], Method]  # (cfg, observed, clean)


def cuda_report() -> str:
    """What torch.cuda says on this node when it has no usable GPU: its own error, the device count and
    CUDA_VISIBLE_DEVICES (a GPU study's trial names them in its one error line)."""
    try:
        torch.cuda.init()
        reason = "torch.cuda initialised, but is_available() is False"
    except Exception as exc:  # torch's errors for a missing driver, a CPU build, a driver too old
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0][:120] if text else type(exc).__name__  # its first sentence
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"torch.cuda: {reason}; device_count {torch.cuda.device_count()}; torch built with CUDA {torch.version.cuda or 'none'}; "
        f"CUDA_VISIBLE_DEVICES {'unset' if visible is None else repr(visible)}"
    )


@dataclass
class Runtime:
    device: torch.device
    amp: bool
    channels_last: bool
    compile: bool = False
    fused: bool = False  # the optimiser's fused kernel

    @classmethod
    def resolve(cls, cfg: RuntimeConfig) -> "Runtime":
        has_cuda = torch.cuda.is_available()
        if cfg.device == "cuda" and not has_cuda:
            raise UserError(f"runtime.device: cuda requested but no GPU is visible on node {socket.gethostname()} ({cuda_report()})")
        device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and has_cuda) else "cpu")
        on_gpu = device.type == "cuda"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        bf16 = on_gpu and torch.cuda.is_bf16_supported()
        if cfg.amp == "on" and on_gpu and not bf16:
            raise UserError("runtime.amp: on needs a GPU with bfloat16 support; use auto or off")
        amp = cfg.amp == "on" or (cfg.amp == "auto" and bf16)
        fused = cfg.fused_optimizer == "on" or (cfg.fused_optimizer == "auto" and on_gpu)
        return cls(device, amp, cfg.channels_last != "off", cfg.compile == "on", fused)


def build_optimizer(cfg: OptimConfig, params, fused: bool = False) -> torch.optim.Optimizer:
    """`fused`: one kernel updates every parameter (the same arithmetic, far fewer GPU launches)."""
    kw = {"fused": True} if fused else {}
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9, nesterov=True, **kw)


def build_scheduler(cfg: OptimConfig, optimizer, steps_per_epoch: int, epochs: int):
    total = steps_per_epoch * epochs
    if cfg.scheduler == "onecycle":
        # torch divides by the warm-up phase's length in steps (pct_start * total - 1): exactly 0 on
        # short runs (pct 0.2 of 5 steps). Keep both phases at least half a step long.
        pct = min(max(cfg.pct_start, 1.5 / total), 1 - 0.5 / total)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=pct)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def seed_host_rngs(seed: int, epoch: int) -> None:
    """Python's and NumPy's global generators (timm's RandAugment draws from both) restart from
    (seed, epoch) every epoch, so a resumed run augments as an uninterrupted one would."""
    random.seed(seed * 1_000_003 + epoch)
    np.random.seed((seed * 1_000_003 + epoch) % 2**32)


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: derive Python's and NumPy's seeds from the per-worker torch seed."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


FINITE_CHECK_EVERY = 25  # training steps between two checks of the loss (each one waits for the GPU)


class Trainer:
    """Everything one run holds: data, noisy labels, networks, optimisers and the method; `run` trains it."""

    def __init__(self, cfg: RunConfig, data: DataBundle | None = None, method_factory: MethodFactory = build_method):
        self.cfg = cfg
        self.rt = Runtime.resolve(cfg.runtime)
        self.world = World.current()
        self.data = data if data is not None else build_dataset(cfg)
        verified = (self.data.verified_rows, self.data.verified_labels)
        self.noise: NoisyLabels = inject_noise(
            cfg.noise, self.data.train.labels, cfg.seed, self.data.class_names, self.data.confusions, verified
        )
        dev = self.rt.device
        labels, clean, measured = self.noise.labels, self.noise.clean, {}
        self.verdicts, self.review = None, {}  # noise.verified: what people said, and what it measured
        if cfg.noise.verified:
            from ..verdicts import apply_verdicts

            self.verdicts, labels, clean, measured, self.review = apply_verdicts(cfg, self.data, labels.copy(), clean.copy())
        self.observed = torch.from_numpy(labels).to(dev)
        self.clean = torch.from_numpy(clean).to(dev)  # UNKNOWN where real noise has no verified label
        self.method: Method = method_factory(cfg, self.observed, self.clean, **measured)
        if self.verdicts is not None:
            self.method.verified = torch.from_numpy(self.verdicts.mask(*labels.shape)).to(dev)

        self.nets = []
        for k in range(self.method.num_networks):
            net = self._new_network(k, 0)
            if self.rt.channels_last:
                net = net.to(memory_format=torch.channels_last)
            if k == 0:
                check_input_size(net, cfg.model.name, self.data.in_chans, cfg.data.image_size, dev)
            self.nets.append(net)
        self.emas = [create_ema(n, cfg.model.ema_decay) for n in self.nets] if cfg.model.ema else []
        self.train_nets = self.nets  # what the training step calls: DDP wrappers with several workers
        if self.world.parallel:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
            self.train_nets = [DistributedDataParallel(n, device_ids=ids) for n in self.nets]
        if self.rt.compile:  # the training step only; checkpoints and evaluation use the plain modules
            self.train_nets = [torch.compile(n) for n in self.train_nets]
        torch.manual_seed(cfg.seed)

        bs = cfg.data.batch_size
        train_images = self.data.train.images if self.method.num_views == 1 else self.data.train.images.two_views()
        self.sampler = EvenBatches(len(self.data.train), bs, cfg.seed, self.world)  # bs: the global batch
        loader_kw = dict(
            num_workers=cfg.data.num_workers,
            pin_memory=dev.type == "cuda",
            persistent_workers=cfg.data.num_workers > 0,
            worker_init_fn=seed_worker,
        )
        self.train_loader = DataLoader(train_images, batch_sampler=self.sampler, **loader_kw)
        self.eval_loaders = {
            "val": DataLoader(self.data.val.images, batch_size=bs * 2, shuffle=False, **loader_kw),
            "test": DataLoader(self.data.test.images, batch_size=bs * 2, shuffle=False, **loader_kw),
        }
        self._first_bad = torch.zeros((), device=dev)  # see _check_finite
        self.round_starts = round_starts(cfg)  # [0] unless method.restarts
        self._new_optimizer(0)
        self.start_epoch = 0
        self.skipped: set[str] = set()  # unreadable image files left out (data.on_bad_image: skip)
        self.thresholds: np.ndarray | None = None  # per class, chosen on the validation split after each epoch

    # ---------------------------------------------------------------- rounds (method.restarts)

    def _new_network(self, k: int, round_index: int) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed * 1000 + k + 100_003 * round_index)  # distinct, reproducible initialisations
        return create_network(self.cfg.model, self.data.num_classes, self.data.in_chans).to(self.rt.device)

    def method_epoch(self, epoch: int) -> int:
        """Epoch `epoch` (0-based) as the method counts it: per round of method.restarts (its warm-up and ramp restart)."""
        return epoch - self._round(epoch)[1]

    def _round(self, epoch: int) -> tuple[int, int, int]:
        """(index, first epoch, epochs) of the round holding 0-based `epoch`."""
        r = max(i for i, start in enumerate(self.round_starts) if start <= epoch)
        end = self.round_starts[r + 1] if r + 1 < len(self.round_starts) else self.cfg.schedule.epochs
        return r, self.round_starts[r], end - self.round_starts[r]

    def _new_optimizer(self, round_index: int) -> None:
        """The optimiser and its schedule for one round (the whole run without restarts)."""
        _, _, epochs = self._round(self.round_starts[round_index])
        self.optimizer = build_optimizer(self.cfg.optim, [p for n in self.nets for p in n.parameters()], fused=self.rt.fused)
        self.scheduler = build_scheduler(self.cfg.optim, self.optimizer, len(self.train_loader), epochs)

    def restart(self, round_index: int) -> None:
        """SELFIE's restart: fresh networks (weights loaded in place, so DDP wrappers and parameter lists
        stay valid) and optimiser; the method keeps its corrected labels and clears its histories."""
        for k, net in enumerate(self.nets):
            net.load_state_dict(self._new_network(k, round_index).state_dict())
        self.emas = [create_ema(n, self.cfg.model.ema_decay) for n in self.nets] if self.cfg.model.ema else []
        self._new_optimizer(round_index)
        self.method.restart()
        torch.manual_seed(self.cfg.seed + round_index)

    # ---------------------------------------------------------------- state

    def state_dict(self, epoch: int) -> dict:
        """Everything a resumed run needs after the epoch with 0-based index `epoch` has finished."""
        return {
            "epoch": epoch + 1,  # epochs completed
            "networks": [n.state_dict() for n in self.nets],
            "emas": [e.state_dict() for e in self.emas],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.cfg.to_dict(),
            # what mhss-predict needs beside the networks: per-class decision thresholds chosen on the validation split
            "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
            "class_names": list(self.data.class_names),
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["networks"]) != len(self.nets) or len(state["emas"]) != len(self.emas):
            raise UserError("checkpoint: it was written by a run with another method or EMA setting")
        try:
            for net, sd in zip(self.nets, state["networks"]):
                net.load_state_dict(sd)
            for ema, sd in zip(self.emas, state["emas"]):
                ema.load_state_dict(sd)
            r, start, _ = self._round(min(state["epoch"], self.cfg.schedule.epochs - 1))
            if r > 0 and state["epoch"] > start:  # saved inside a later round: its optimiser and schedule
                self._new_optimizer(r)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.method.load_state_dict(state["method"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:  # another model, method or dataset
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
            raise UserError(f"checkpoint: does not fit this run's model, method or data ({first})") from None
        self.thresholds = np.array(state["thresholds"]) if state.get("thresholds") is not None else None
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch = state["epoch"]

    # ---------------------------------------------------------------- epochs

    def _autocast(self):
        return torch.autocast(device_type=self.rt.device.type, dtype=torch.bfloat16, enabled=self.rt.amp)

    def _forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.train_nets[k](x)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.rt.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.rt.channels_last else x

    def drop_bad_images(self, dataset, images, indices: torch.Tensor):
        """Rows whose image file could not be decoded come back with a negative index (data/images.py):
        stop with the file's name, or leave them out of the batch (`data.on_bad_image: skip`)."""
        bad = indices < 0
        if not bool(bad.any()):
            return images, indices, 0
        rows = [original_index(int(i)) for i in indices[bad]]
        if self.cfg.data.on_bad_image == "error":
            raise UserError(f"{dataset.failure(rows[0])}; set data.on_bad_image: skip to leave such images out")
        for r in rows:
            path = dataset.path(r)
            if path not in self.skipped and self.world.is_main:
                print(f"skipping unreadable image {path}", flush=True)
            self.skipped.add(path)
        good = ~bad
        images = [v[good] for v in images] if isinstance(images, (list, tuple)) else images[good]
        return images, indices[good], int(bad.sum())

    def train_step(self, views: list[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        """One optimisation step of every network on one batch (views already on the device).

        With several workers, `views` and `indices` are this worker's slice; the method is given
        the global batch's indices and logits (this slice's logits with their gradients)."""
        with self._autocast():
            logits = [[net(v) for v in views] for net in self.train_nets]
        indices, logits = self.world.gather_batch(indices, logits)  # as is with one worker
        loss = self.method.loss(Batch(indices, views, logits, self._forward))
        self._first_bad = torch.where(torch.isfinite(loss) | ~torch.isfinite(self._first_bad), self._first_bad, loss.detach().float())
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.world.size).backward()  # DDP averages over workers; the global loss wants the sum
        self.optimizer.step()
        self.scheduler.step()
        for ema, net in zip(self.emas, self.nets):
            ema.update(net)
        return loss.detach()

    def _check_finite(self) -> None:
        """Stop on a non-finite training loss. Checked every FINITE_CHECK_EVERY steps, not every step: reading
        a GPU value waits for the step to finish, so the next step could not be queued behind it. The global
        loss is the same on every worker, so all of them stop at the same step."""
        bad = self._first_bad.item()
        if bad != 0.0:
            raise TrainingDiverged(
                f"training loss became {bad} at epoch {self.method.epoch + 1} (optim.lr {self.cfg.optim.lr:g}, "
                f"optim.weight_decay {self.cfg.optim.weight_decay:g})"
            )

    def train_one_epoch(
        self, epoch: int, log: Callable[[str], None] | None = None, stop: threading.Event | None = None
    ) -> dict[str, float]:
        """One pass over the training images; with `log`, a progress line every `runtime.progress_every_s`
        seconds (an epoch shorter than that prints none)."""
        for net in self.nets:
            net.train()
        self.sampler.set_epoch(epoch)
        seed_host_rngs(self.cfg.seed, epoch)
        round_epoch = self.method_epoch(epoch)
        self.method.begin_epoch(round_epoch)
        total_loss, steps, skipped, seen = torch.zeros((), device=self.rt.device), 0, 0, 0
        self._first_bad = torch.zeros((), device=self.rt.device)  # the first non-finite loss of the epoch, else 0
        start = last_line = time.perf_counter()
        every = self.cfg.runtime.progress_every_s
        for images, indices in self.train_loader:
            if stop is not None and stop.is_set():
                raise SystemExit(0)
            if log is not None and every and steps and time.perf_counter() - last_line >= every:
                last_line = time.perf_counter()
                log(self._progress_line(epoch, steps, seen, last_line - start))
            seen += len(indices)
            images, indices, bad = self.drop_bad_images(self.train_loader.dataset, images, indices)
            skipped += bad
            if len(indices) == 0 and not self.world.parallel:
                continue
            views = [self._to_device(v) for v in (images if isinstance(images, (list, tuple)) else [images])]
            loss = self.train_step(views, indices.to(self.rt.device, non_blocking=True))
            total_loss += loss.float()  # stays on the device: no host sync per step
            steps += 1
            if steps % FINITE_CHECK_EVERY == 0:
                self._check_finite()
        self._check_finite()
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        # every training image is seen once per epoch (by one of the workers)
        stats = {
            "train_loss": total_loss.item() / max(steps, 1) / len(self.nets),
            "images_per_s": len(self.data.train) / seconds,
            "train_seconds": seconds,
        }
        if self.cfg.data.on_bad_image == "skip":
            stats["skipped_images"] = skipped
        for key, value in self.method.end_epoch(round_epoch).items():
            if isinstance(value, list):  # one value per class: named by the dataset's classes
                stats.update({f"{key}_{name}": v for name, v in zip(self.data.class_names, value)})
            else:
                stats[key] = value
        if self.world.parallel:  # the design promises identical method state on every worker: check it
            digest = state_digest(self.method.state_dict())
            if not self.world.same_everywhere(digest):
                raise RuntimeError(f"method state differs across the {self.world.size} workers after epoch {epoch + 1}")
            stats["method_state_digest"] = digest
        return stats

    def _progress_line(self, epoch: int, steps: int, seen: int, seconds: float) -> str:
        """`epoch 3/30: 1200/9000 batches, 1150 images/s, 1620 s left` (every worker trains its share at the same pace)."""
        rate = seen * self.world.size / max(seconds, 1e-9)
        left = max(len(self.data.train) - seen * self.world.size, 0) / max(rate, 1e-9)
        return (
            f"epoch {epoch + 1}/{self.cfg.schedule.epochs}: {steps}/{len(self.train_loader)} batches, "
            f"{rate:.0f} images/s, {left:.0f} s left"
        )

    def eval_network(self) -> torch.nn.Module:
        """The network whose predictions are evaluated: the first one (its EMA when enabled)."""
        return self.emas[0].module if self.emas else self.nets[0]

    @torch.no_grad()
    def predict(self, loader: DataLoader, log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, row indices): rows of unreadable images are left out (or stop the run). With `log`,
        a progress line at most every PROGRESS_S seconds (long folders in mhss-predict)."""
        net = self.eval_network()
        net.eval()
        out, rows = [], []
        start = last = time.perf_counter()
        done, total = 0, len(loader.dataset)
        for images, indices in loader:
            done += len(indices)
            images, indices, _ = self.drop_bad_images(loader.dataset, images, indices)
            if len(indices):
                with self._autocast():
                    out.append(torch.sigmoid(net(self._to_device(images)).float()).cpu())
                rows.append(indices)
            if log is not None and time.perf_counter() - last >= PROGRESS_S:
                last = time.perf_counter()
                rate = done / (last - start)
                log(f"{done}/{total} images, {rate:.0f} images/s, {(total - done) / max(rate, 1e-9):.0f} s left")
        if not out:
            return np.zeros((0, self.data.num_classes), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return torch.cat(out).numpy(), torch.cat(rows).numpy()

    @torch.no_grad()
    def network_logits(self, loader: DataLoader) -> list[torch.Tensor]:
        """Each network's logits (its EMA's when on) on the loader's images, in the loader's order (eval mode)."""
        nets = [ema.module for ema in self.emas] or self.nets
        for net in nets:
            net.eval()
        outs: list[list[torch.Tensor]] = [[] for _ in nets]
        for images, _ in loader:
            x = self._to_device(images)
            with self._autocast():
                for out, net in zip(outs, nets):
                    out.append(net(x).float())
        return [torch.cat(o) for o in outs]

    def evaluate(self) -> dict[str, float]:
        metrics = {}
        for split, loader in self.eval_loaders.items():
            probs, rows = self.predict(loader)
            labels = getattr(self.data, split).labels[rows]
            metrics.update(classification_metrics(probs, labels, self.data.class_names, split))
            if split == "val" and np.isfinite(probs).all():  # F2 where the dataset weighs recall (Sewer-ML's class weights), else F1
                self.thresholds = best_thresholds(probs, labels, beta=2.0 if self.data.class_weights is not None else 1.0)
            if self.data.class_weights is not None:
                metrics.update(sewer_metrics(probs, labels, self.data.class_weights, split))
            if self.cfg.data.on_bad_image == "skip":
                metrics[f"{split}_skipped_images"] = len(loader.dataset) - len(rows)
        return metrics

    def noise_metrics(self) -> dict[str, float]:
        """Realised noise rates where the clean labels are known (synthetic noise, or a verified subset)."""
        if self.noise.known_rows == 0:
            return {}
        rates = {f"noise_rate_{n}": float(r) for n, r in zip(self.data.class_names, self.noise.rates)}
        rates["noise_rate"] = float(np.nanmean(self.noise.rates))
        return rates

    def noise_summary(self) -> str:
        known = self.noise.known_rows
        if known == 0:
            return "clean labels unknown"
        where = "" if known == len(self.data.train) else f" on {known} verified images"
        return f"realised mean eps {np.nanmean(self.noise.rates):.3f}{where}"

    def run(
        self,
        report: ReportFn,
        log: Callable[[str], None] = print,
        scratch: str | Path | None = None,
        stop: threading.Event | None = None,
        until: int | None = None,
    ) -> list[dict]:
        """Train the remaining epochs (up to epoch `until` only, when given: a shared warm-up's prefix run);
        call `report(metrics, checkpoint_dir)` after each one. Once `stop` is set the run ends at the next
        batch (SystemExit 0: a Tune trial stopped by its scheduler).

        Each checkpoint is written to a scratch folder that `report` copies: a fresh temporary one,
        or `scratch`, emptied before each use, so that a process killed mid-report leaves at most
        that one folder behind and its next run (a resumed trial) clears it."""
        cfg, epochs = self.cfg, self.cfg.schedule.epochs
        main = self.world.is_main
        if not main:
            log = lambda line: None  # noqa: E731  (one worker speaks for the run)
        open_split_caches((self.data.train, self.data.val, self.data.test), say=log)  # data.cache_dir: now that all is checked
        if self.start_epoch == 0:
            log(
                f"{cfg.data.name}: {len(self.data.train)} train / {len(self.data.val)} val / {len(self.data.test)} test, "
                f"{self.data.num_classes} classes; noise {cfg.noise.mode}, {self.noise_summary()}; "
                f"method {cfg.method.name} on {len(self.nets)} x {cfg.model.name}, device {self.rt.device}"
            )
            if self.review:
                from ..verdicts import review_lines

                for line in review_lines(self.review, len(cfg.noise.verified)):
                    log(line)
        history = []
        for epoch in range(self.start_epoch, min(epochs, until) if until is not None else epochs):
            start = time.perf_counter()
            round_index = self._round(epoch)[0]
            if epoch > 0 and epoch in self.round_starts:
                self.restart(round_index)
                kept = sum(int((y != self.observed).sum()) for y in self.method.current_labels())
                log(
                    f"restart {round_index} of {len(self.round_starts) - 1}: networks and optimiser re-initialised, histories "
                    f"cleared, {kept} corrected labels kept"
                )
            metrics = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}  # epochs completed, 1-based
            if len(self.round_starts) > 1:
                metrics["round"] = round_index
            metrics.update(self.train_one_epoch(epoch, log, stop))
            if not main:  # the first worker evaluates and checkpoints; the others only train
                report(metrics, None)
                history.append(metrics)
                continue
            metrics.update(self.evaluate())
            metrics.update(self.noise_metrics())
            metrics["epoch_seconds"] = time.perf_counter() - start
            log(
                f"epoch {epoch + 1}/{epochs}  loss {metrics['train_loss']:.4f}  val mAP {metrics['val_mAP']:.2f}  "
                f"test mAP {metrics['test_mAP']:.2f}  {metrics['images_per_s']:.0f} img/s  {metrics['epoch_seconds']:.1f} s"
            )
            with _scratch_folder(scratch) as ckpt_dir:
                save_checkpoint(ckpt_dir, self.state_dict(epoch))
                report(metrics, ckpt_dir)
            history.append(metrics)
        return history


@contextlib.contextmanager
def _scratch_folder(path: str | Path | None):
    if path is None:
        with tempfile.TemporaryDirectory(prefix="mhss-ckpt-") as folder:
            yield folder
        return
    shutil.rmtree(path, ignore_errors=True)  # what a killed run left
    os.makedirs(path)
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fit(cfg: RunConfig, report: ReportFn, resume_from: str | Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Train `cfg` (resuming from a checkpoint folder if given); returns the metrics of the epochs run."""
    trainer = Trainer(cfg)
    if resume_from is not None:
        trainer.load_state_dict(load_checkpoint(resume_from))
    return trainer.run(report, log)
