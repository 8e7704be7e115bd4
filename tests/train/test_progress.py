"""Progress lines within a long epoch (runtime.progress_every_s)."""

import re

from mhss_ray.train.loop import Trainer
from tests.conftest import tiny_config


def test_a_long_epoch_prints_progress_lines_and_a_short_one_none():
    cfg = tiny_config(schedule={"epochs": 1}, runtime={"device": "cpu", "progress_every_s": 1e-6})  # every batch is "long"
    lines = []
    Trainer(cfg).run(lambda metrics, ckpt: None, log=lines.append)
    progress = [line for line in lines if "batches" in line]
    assert len(progress) == 192 // 32 - 1  # before every batch but the first
    assert all(re.fullmatch(r"epoch 1/1: \d/6 batches, \d+ images/s, \d+ s left", line) for line in progress), progress
    quiet = []
    Trainer(tiny_config(schedule={"epochs": 1})).run(lambda metrics, ckpt: None, log=quiet.append)  # the default: once a minute
    assert not [line for line in quiet if "batches" in line] and any(line.startswith("epoch 1/1") for line in quiet)
