"""mhss-pretrain: formula-driven pretraining, deterministic and cached, loaded by model.pretrained_path."""

import numpy as np
import pytest
import torch

from mhss_ray.pretrain.command import pretrain
from mhss_ray.pretrain.glyphs import categories, render
from mhss_ray.pretrain.spec import PretrainSpec
from mhss_ray.train.loop import Trainer

from ..conftest import TEST_MODEL, tiny_config

SMALL = PretrainSpec(model=TEST_MODEL, image_size=16, in_chans=1, categories=4, images=96, epochs=1, batch_size=32)


def test_the_images_are_the_same_for_a_seed_and_show_what_their_labels_say():
    shapes = categories(4, seed=0)
    a, labels = render(shapes, 50, 16, 3, seed=0)
    b, _ = render(shapes, 50, 16, 3, seed=0)
    assert a.shape == (50, 3, 16, 16) and np.array_equal(a, b) and np.array_equal(a[:, 0], a[:, 2])  # grey in every channel
    assert ((labels.sum(1) >= 1) & (labels.sum(1) <= 4)).all() and (a.reshape(50, -1).max(1) > 100).all()  # something is drawn
    other, _ = render(categories(4, seed=1), 50, 16, 3, seed=0)
    assert not np.array_equal(a, other)


def test_a_pretrained_file_is_made_once_named_by_its_spec_and_loads_into_a_run(tmp_path):
    import subprocess
    import sys

    said = []
    (tmp_path / "a").mkdir()
    mine = tmp_path / "a" / "my-notes.pth"  # a user's file in the same folder stays as it is
    mine.write_bytes(b"keep me")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / "a" / f"{SMALL.file_name()}.{gone}.tmp"  # what a pretraining killed while it wrote left
    stale.write_bytes(b"half")
    path = pretrain(SMALL, tmp_path / "a", threads=1, log=said.append)
    assert path.name == SMALL.file_name() and path.with_suffix(".json").is_file() and not list(path.parent.glob("*.tmp"))
    assert mine.read_bytes() == b"keep me"
    again = pretrain(SMALL, tmp_path / "a", threads=1, log=said.append)
    assert again == path and said[-1].endswith("(cached)")
    twin = pretrain(SMALL, tmp_path / "b", threads=1, log=lambda _: None)  # made again elsewhere: bit for bit
    first, second = torch.load(path, weights_only=True), torch.load(twin, weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert PretrainSpec(**{**SMALL.__dict__, "seed": 1}).file_name() != SMALL.file_name()

    trainer = Trainer(tiny_config(model={"name": TEST_MODEL, "pretrained_path": str(path)}))
    net = trainer.networks.nets[0].state_dict()
    body = [k for k in first if not k.startswith("fc.")]
    assert body and all(torch.equal(net[k], first[k]) for k in body)  # every layer but the classifier (4 glyph classes, 10 digits)
    assert net["fc.weight"].shape[0] == 10


@pytest.mark.parametrize(
    "args, line",
    [
        (["--images", "10"], "mhss-pretrain: error: --images: 10 is fewer than one batch of 32"),
        (["--epochs", "0"], "mhss-pretrain: error: --epochs: 0 must be at least 1"),
        (["--model", "no_such_net"], "mhss-pretrain: error: --model: unknown timm model 'no_such_net'"),
    ],
)
def test_the_command_refuses_what_cannot_train_in_one_line(tmp_path, capsys, args, line):
    from mhss_ray.cli import pretrain_main

    with pytest.raises(SystemExit) as exit_:
        pretrain_main([*args, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == line
    assert not (tmp_path / "out").exists()
