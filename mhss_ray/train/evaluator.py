"""What a run's networks predict, and how well: probabilities on any image set, each network's logits
(mhss-audit), the metrics of the validation and test splits after each epoch, and the per-class decision
thresholds chosen on the validation split (mhss-predict applies them). mhss-predict builds one from a
checkpoint alone: the data and the networks, no noise, method or optimiser."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import RunConfig
from ..data import DataBundle, build_dataset
from .bad_images import BadImages
from .batching import loader_options
from .checkpoint import fitting
from .metrics import best_thresholds, classification_metrics, sewer_metrics
from .networks import Networks
from .runtime import Runtime

PROGRESS_S = 30.0  # progress lines of long predictions, at most this often


class Evaluator:
    def __init__(self, cfg: RunConfig, data: DataBundle, networks: Networks, rt: Runtime, bad_images: BadImages):
        self.cfg, self.data, self.networks, self.rt, self.bad_images = cfg, data, networks, rt, bad_images
        options = loader_options(cfg.data.num_workers, rt.device)
        bs = cfg.data.batch_size * 2
        self.loaders = {
            "val": DataLoader(data.val.images, batch_size=bs, shuffle=False, **options),
            "test": DataLoader(data.test.images, batch_size=bs, shuffle=False, **options),
        }
        self.thresholds: np.ndarray | None = None  # per class, chosen on the validation split after each epoch

    @classmethod
    def of_checkpoint(cls, cfg: RunConfig, state: dict) -> "Evaluator":
        """The networks of a checkpoint (Trainer.state_dict) on the data of its config."""
        rt = Runtime.resolve(cfg.runtime)
        data = build_dataset(cfg)
        networks = Networks(cfg, len(state["networks"]), data.num_classes, data.in_chans, rt)
        with fitting("model or data"):
            networks.load_state_dict(state)
        evaluator = cls(cfg, data, networks, rt, BadImages(cfg.data.on_bad_image))
        evaluator.take_thresholds(state)
        return evaluator

    def take_thresholds(self, state: dict) -> None:
        """The thresholds a checkpoint recorded (None in one written before they were)."""
        self.thresholds = np.array(state["thresholds"]) if state.get("thresholds") is not None else None

    @torch.no_grad()
    def predict(self, loader: DataLoader, log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, row indices) of the evaluated network: rows of unreadable images are left out (or stop
        the run). With `log`, a progress line at most every PROGRESS_S seconds (long folders in mhss-predict)."""
        net = self.networks.evaluated()
        net.eval()
        out, rows = [], []
        start = last = time.perf_counter()
        done, total = 0, len(loader.dataset)
        for images, indices in loader:
            done += len(indices)
            images, indices, _ = self.bad_images.drop(loader.dataset, images, indices)
            if len(indices):
                with self.rt.autocast():
                    out.append(torch.sigmoid(net(self.rt.to_device(images)).float()).cpu())
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
        nets = self.networks.each_evaluated()
        for net in nets:
            net.eval()
        outs: list[list[torch.Tensor]] = [[] for _ in nets]
        for images, _ in loader:
            x = self.rt.to_device(images)
            with self.rt.autocast():
                for out, net in zip(outs, nets):
                    out.append(net(x).float())
        return [torch.cat(o) for o in outs]

    def evaluate(self) -> dict[str, float]:
        """The validation and test metrics of the evaluated network; chooses the thresholds on validation."""
        metrics = {}
        for split, loader in self.loaders.items():
            probs, rows = self.predict(loader)
            labels = getattr(self.data, split).labels[rows]
            metrics.update(classification_metrics(probs, labels, self.data.class_names, split))
            if split == "val" and np.isfinite(probs).all():  # F2 where the dataset weighs recall (Sewer-ML's class weights), else F1
                self.thresholds = best_thresholds(probs, labels, beta=self.beta)
            if self.data.class_weights is not None:
                metrics.update(sewer_metrics(probs, labels, self.data.class_weights, split))
            if self.cfg.data.on_bad_image == "skip":
                metrics[f"{split}_skipped_images"] = len(loader.dataset) - len(rows)
        return metrics

    @property
    def beta(self) -> float:
        """The F-beta the thresholds maximise: 2 where the dataset weighs recall (Sewer-ML's class weights), else 1."""
        return 2.0 if self.data.class_weights is not None else 1.0

    def chosen_thresholds(self) -> np.ndarray:
        """The checkpoint's thresholds; one written before they were recorded: chosen now on the validation split."""
        if self.thresholds is not None:
            return np.asarray(self.thresholds, dtype=float)
        probs, rows = self.predict(self.loaders["val"])
        return best_thresholds(probs, self.data.val.labels[rows], beta=self.beta)
