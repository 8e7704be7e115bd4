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
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..config import RunConfig
from ..data import DataBundle, build_dataset
from ..data.decode_cache import open_split_caches
from ..errors import TrainingDiverged
from ..methods import Batch, Method, build_method
from ..noise import NoisyLabels, inject_noise
from ..rounds import Round, RoundSchedule
from .bad_images import BadImages
from .batching import EvenBatches, loader_options
from .checkpoint import fitting, load_checkpoint, save_checkpoint
from .distributed import World, state_digest
from .evaluator import Evaluator
from .networks import Networks
from .optimisation import build_optimizer, build_scheduler
from .runtime import Runtime

ReportFn = Callable[[dict, Optional[str]], None]  # (metrics, checkpoint folder or None)
MethodFactory = Callable[[RunConfig, torch.Tensor, torch.Tensor], Method]  # (cfg, observed, clean)
FINITE_CHECK_EVERY = 25  # training steps between two checks of the loss (each one waits for the GPU)


def seed_host_rngs(seed: int, epoch: int) -> None:
    """Python's and NumPy's global generators (timm's RandAugment draws from both) restart from
    (seed, epoch) every epoch, so a resumed run augments as an uninterrupted one would."""
    random.seed(seed * 1_000_003 + epoch)
    np.random.seed((seed * 1_000_003 + epoch) % 2**32)


class Trainer:
    """One run: its data and noisy labels, the method, the networks (networks.py), their optimiser, the
    evaluator (evaluator.py) and the rounds of method.restarts (rounds.py); `run` trains it."""

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
        self.verdicts, self.review, self.review_lines = None, {}, []  # noise.verified: what people said, what it measured
        if cfg.noise.verified:
            from ..verdicts import apply_verdicts, review_lines

            self.verdicts, labels, clean, measured, self.review = apply_verdicts(cfg, self.data, labels.copy(), clean.copy())
            self.review_lines = review_lines(self.review, len(cfg.noise.verified))  # said when the run starts
        self.observed = torch.from_numpy(labels).to(dev)
        self.clean = torch.from_numpy(clean).to(dev)  # UNKNOWN where real noise has no verified label
        self.method: Method = method_factory(cfg, self.observed, self.clean, **measured)
        if self.verdicts is not None:
            self.method.verified = torch.from_numpy(self.verdicts.mask(*labels.shape)).to(dev)
        self.networks = Networks(cfg, self.method.num_networks, self.data.num_classes, self.data.in_chans, self.rt, self.world)
        torch.manual_seed(cfg.seed)

        train_images = self.data.train.images if self.method.num_views == 1 else self.data.train.images.two_views()
        self.sampler = EvenBatches(len(self.data.train), cfg.data.batch_size, cfg.seed, self.world)  # the global batch
        self.train_loader = DataLoader(train_images, batch_sampler=self.sampler, **loader_options(cfg.data.num_workers, dev))
        self.bad_images = BadImages(cfg.data.on_bad_image, announce=self.world.is_main)
        self.evaluator = Evaluator(cfg, self.data, self.networks, self.rt, self.bad_images)
        self.rounds = RoundSchedule.of(cfg).by_epoch()  # each epoch's round of method.restarts (one round without)
        self._first_bad = torch.zeros((), device=dev)  # see _check_finite
        self._new_optimizer(self.rounds[0])
        self.start_epoch = 0

    # ---------------------------------------------------------------- rounds (method.restarts)

    def _new_optimizer(self, r: Round) -> None:
        """The optimiser and its schedule for one round (the whole run without restarts)."""
        self.optimizer = build_optimizer(self.cfg.optim, self.networks.parameters(), fused=self.rt.fused)
        self.scheduler = build_scheduler(self.cfg.optim, self.optimizer, len(self.train_loader), r.epochs)

    def restart(self, r: Round) -> None:
        """SELFIE's restart: fresh networks and optimiser; the method keeps its corrected labels and clears its histories."""
        self.networks.reinitialise(r.index)
        self._new_optimizer(r)
        self.method.restart()
        torch.manual_seed(self.cfg.seed + r.index)

    def method_epoch(self, epoch: int) -> int:
        """0-based `epoch` as the method counts it: from its round's first epoch (its warm-up and ramp restart)."""
        return epoch - self.rounds[epoch].first

    # ---------------------------------------------------------------- state

    def state_dict(self, epoch: int) -> dict:
        """Everything a resumed run needs after the epoch with 0-based index `epoch` has finished."""
        thresholds = self.evaluator.thresholds
        return {
            "epoch": epoch + 1,  # epochs completed
            **self.networks.state_dict(),  # "networks", "emas"
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.cfg.to_dict(),
            # what mhss-predict needs beside the networks: per-class decision thresholds chosen on the validation split
            "thresholds": None if thresholds is None else [float(t) for t in thresholds],
            "class_names": list(self.data.class_names),
        }

    def load_state_dict(self, state: dict) -> None:
        with fitting("model, method or data"):
            self.networks.load_state_dict(state)
            r = self.rounds[min(state["epoch"], self.cfg.schedule.epochs - 1)]
            if r.index > 0 and state["epoch"] > r.first:  # saved inside a later round: its optimiser and schedule
                self._new_optimizer(r)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.method.load_state_dict(state["method"])
        self.evaluator.take_thresholds(state)
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start_epoch = state["epoch"]

    # ---------------------------------------------------------------- epochs

    def _forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        with self.rt.autocast():
            return self.networks.train_nets[k](x)

    def train_step(self, views: list[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        """One optimisation step of every network on one batch (views already on the device).

        With several workers, `views` and `indices` are this worker's slice; the method is given
        the global batch's indices and logits (this slice's logits with their gradients)."""
        with self.rt.autocast():
            logits = [[net(v) for v in views] for net in self.networks.train_nets]
        indices, logits = self.world.gather_batch(indices, logits)  # as is with one worker
        loss = self.method.loss(Batch(indices, views, logits, self._forward))
        self._first_bad = torch.where(torch.isfinite(loss) | ~torch.isfinite(self._first_bad), self._first_bad, loss.detach().float())
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.world.size).backward()  # DDP averages over workers; the global loss wants the sum
        self.optimizer.step()
        self.scheduler.step()
        self.networks.update_emas()
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
        for net in self.networks.nets:
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
            images, indices, bad = self.bad_images.drop(self.train_loader.dataset, images, indices)
            skipped += bad
            if len(indices) == 0 and not self.world.parallel:
                continue
            views = [self.rt.to_device(v) for v in (images if isinstance(images, (list, tuple)) else [images])]
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
            "train_loss": total_loss.item() / max(steps, 1) / len(self.networks),
            "images_per_s": len(self.data.train) / seconds,
            "train_seconds": seconds,
        }
        if self.cfg.data.on_bad_image == "skip":
            stats["skipped_images"] = skipped
        self._predict_heldout()
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

    @torch.no_grad()
    def _predict_heldout(self) -> None:
        """The method's held-out rows (method.onset: plateau), each network on the plain views of its own, in eval mode."""
        rows = self.method.heldout_rows()
        if not rows:
            return
        plain = self.data.train.images.evaluation_view()
        for k, idx in enumerate(rows):
            net = self.networks.nets[k]
            net.eval()
            loader = DataLoader(
                Subset(plain, idx.cpu().tolist()),
                batch_size=2 * self.cfg.data.batch_size,
                **loader_options(self.cfg.data.num_workers, self.rt.device),
            )
            for images, indices in loader:
                images, indices, _ = self.bad_images.drop(loader.dataset, images, indices)
                if len(indices):
                    with self.rt.autocast():
                        logits = net(self.rt.to_device(images))
                    self.method.take_heldout(k, indices.to(self.rt.device), logits.float())
            net.train()

    def _progress_line(self, epoch: int, steps: int, seen: int, seconds: float) -> str:
        """`epoch 3/30: 1200/9000 batches, 1150 images/s, 1620 s left` (every worker trains its share at the same pace)."""
        rate = seen * self.world.size / max(seconds, 1e-9)
        left = max(len(self.data.train) - seen * self.world.size, 0) / max(rate, 1e-9)
        return (
            f"epoch {epoch + 1}/{self.cfg.schedule.epochs}: {steps}/{len(self.train_loader)} batches, "
            f"{rate:.0f} images/s, {left:.0f} s left"
        )

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
        stop_after: Callable[[dict], bool] | None = None,
    ) -> list[dict]:
        """Train the remaining epochs (up to epoch `until` only, when given: a shared warm-up's prefix run,
        or up to the first epoch whose metrics `stop_after` holds: one that stops at its onset); call
        `report(metrics, checkpoint_dir)` after each one. Once `stop` is set the run ends at the next
        batch (SystemExit 0: a Tune trial stopped by its scheduler).

        Each checkpoint is written to a scratch folder that `report` copies: a fresh temporary one,
        or `scratch`, emptied before each use, so that a process killed mid-report leaves at most
        that one folder behind and its next run (a resumed trial) clears it."""
        epochs = self.cfg.schedule.epochs
        main = self.world.is_main
        if not main:
            log = lambda line: None  # noqa: E731  (one worker speaks for the run)
        open_split_caches((self.data.train, self.data.val, self.data.test), say=log)  # data.cache_dir: now that all is checked
        if self.start_epoch == 0:
            self._say_what_trains(log)
        history = []
        for epoch in range(self.start_epoch, min(epochs, until) if until is not None else epochs):
            start = time.perf_counter()
            r = self.rounds[epoch]
            if r.index > 0 and epoch == r.first:
                self.restart(r)
                kept = sum(int((y != self.observed).sum()) for y in self.method.current_labels())
                log(
                    f"restart {r.index} of {self.cfg.method.restarts}: networks and optimiser re-initialised, histories "
                    f"cleared, {kept} corrected labels kept"
                )
            metrics = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}  # epochs completed, 1-based
            if self.cfg.method.restarts:
                metrics["round"] = r.index
            metrics.update(self.train_one_epoch(epoch, log, stop))
            if not main:  # the first worker evaluates and checkpoints; the others only train
                report(metrics, None)
                history.append(metrics)
                if stop_after is not None and stop_after(metrics):
                    break
                continue
            metrics.update(self.evaluator.evaluate())
            metrics.update(self.noise_metrics())
            metrics["epoch_seconds"] = time.perf_counter() - start
            log(
                f"epoch {epoch + 1}/{epochs}  loss {metrics['train_loss']:.4f}  val mAP {metrics['val_mAP']:.2f}  "
                f"test mAP {metrics['test_mAP']:.2f}  {metrics['images_per_s']:.0f} img/s  {metrics['epoch_seconds']:.1f} s"
            )
            if "onset" in metrics:  # method.onset: plateau
                patience = self.cfg.method.onset_patience
                log(
                    f"onset: the held-out images' mAP has not risen for {patience} epoch{'s' if patience > 1 else ''}; "
                    f"{self.cfg.method.name} selects from epoch {epoch + 2} on"
                )
            with _scratch_folder(scratch) as ckpt_dir:
                save_checkpoint(ckpt_dir, self.state_dict(epoch))
                report(metrics, ckpt_dir)
            history.append(metrics)
            if stop_after is not None and stop_after(metrics):
                break
        if history and history[-1]["epoch"] == epochs and (note := self.method.final_note()):
            log(note)
        return history

    def _say_what_trains(self, log: Callable[[str], None]) -> None:
        cfg = self.cfg
        log(
            f"{cfg.data.name}: {len(self.data.train)} train / {len(self.data.val)} val / {len(self.data.test)} test, "
            f"{self.data.num_classes} classes; noise {cfg.noise.mode}, {self.noise_summary()}; "
            f"method {cfg.method.name} on {len(self.networks)} x {cfg.model.name}, device {self.rt.device}"
        )
        for line in [*self.review_lines, *self.method.notes]:
            log(line)


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
