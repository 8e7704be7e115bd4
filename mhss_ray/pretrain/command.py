"""`mhss-pretrain`: a pretrained start without a hub. Trains a timm network on formula-driven images
(glyphs.py) and writes its weights where `model.pretrained_path` loads them (timm adapts the first conv
to the run's channels and drops the classifier).

The file is named by a digest of everything that makes it (the spec below and this module's VERSION), so
the same command finds it again instead of training: deterministic and cached. It is written through a
temporary file: a killed pretraining leaves nothing that looks finished."""

from __future__ import annotations

import dataclasses
import json
import os
from glob import escape as glob_escape
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..outputs import pid_alive
from .spec import VERSION, PretrainSpec

HELD_OUT = 1000  # images kept out of training, to report how well the task was learnt


def _mean_ap(probs: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    cols = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    return 100.0 * float(np.mean([average_precision_score(labels[:, c], probs[:, c]) for c in cols]))


def _write_replacing(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` whole or not at all: a temporary file named after this process, then renamed."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> None:
    """The temporary files of a pretraining that was killed while it wrote (their process is gone)."""
    for tmp in out.parent.glob(f"{glob_escape(out.stem)}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def pretrain(spec: PretrainSpec, folder: str | Path, threads: int | None = None, log: Callable[[str], None] = print) -> Path:
    """The weights file of `spec` in `folder`: found there, or trained now (minutes on 2 CPU cores)."""
    out = Path(folder) / spec.file_name()
    remove_stale_temporaries(out)
    if out.is_file():
        log(f"pretrained start: {out} (cached)")
        return out
    import timm

    from ..errors import UserError
    from .glyphs import categories, render

    if not timm.is_model(spec.model):
        raise UserError(f"--model: unknown timm model {spec.model!r}")
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    shapes = categories(spec.categories, spec.seed)
    images, labels = render(shapes, spec.images + HELD_OUT, spec.image_size, spec.in_chans, spec.seed)
    x = torch.from_numpy(images)
    mean, std = float(x[: spec.images].float().mean() / 255), float(x[: spec.images].float().std() / 255)
    x = (x.float() / 255 - mean) / std
    y = torch.from_numpy(labels).float()
    log(f"pretraining {spec.model} on {spec.images} formula-driven images ({spec.categories} glyph categories, "
        f"{spec.image_size} px, {spec.in_chans} channel{'s' if spec.in_chans > 1 else ''}), {spec.epochs} epochs")  # fmt: skip

    torch.manual_seed(spec.seed)
    net = timm.create_model(spec.model, num_classes=spec.categories, in_chans=spec.in_chans)
    steps = spec.images // spec.batch_size  # the last partial batch is dropped: BatchNorm never sees one image alone
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.epochs * steps, pct_start=0.2)
    order = torch.Generator().manual_seed(spec.seed)
    for epoch in range(spec.epochs):
        net.train()
        perm = torch.randperm(spec.images, generator=order)
        total = 0.0
        for b in range(steps):
            idx = perm[b * spec.batch_size : (b + 1) * spec.batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log(f"  epoch {epoch + 1}/{spec.epochs}  loss {total / steps:.4f}  {time.perf_counter() - start:.0f} s")
    net.eval()
    with torch.no_grad():
        held = torch.cat([torch.sigmoid(net(chunk)) for chunk in x[spec.images :].split(500)]).numpy()
    score = _mean_ap(held, labels[spec.images :])

    out.parent.mkdir(parents=True, exist_ok=True)
    about = {
        **dataclasses.asdict(spec),
        "version": VERSION,
        "held_out_mAP": round(score, 2),
        "seconds": round(time.perf_counter() - start, 1),
    }
    # the record first, the weights last: a run killed between them leaves no weights, so the next one trains
    _write_replacing(out.with_suffix(".json"), lambda f: f.write_text(json.dumps(about, indent=1) + "\n"))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}  # tensors only: torch.load(weights_only=True) reads it
    _write_replacing(out, lambda f: torch.save(state, f))
    log(f"held-out mAP on the glyph task {score:.2f}; wrote {out} ({time.perf_counter() - start:.0f} s)")
    return out
