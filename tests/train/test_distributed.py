"""Data-parallel selection: two real gloo processes select, update state and compute gradients
exactly as one process does on the same global batches (ARCHITECTURE.md, "Rules of the house")."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mhss_ray.methods import Batch, build_method
from mhss_ray.train.batching import EvenBatches
from mhss_ray.train.distributed import World, state_digest

from ..conftest import tiny_config

N, C, B, EPOCHS = 61, 5, 21, 4  # uneven batches and uneven worker slices on purpose
METHODS = {
    "asl": {},
    "coteaching": {"alpha": 1.5, "t_k": 2},
    "coselfie": {"q": 2, "warmup": 2, "theta": 0.5, "t_k": 2},
    "mhss": {"q": 2, "warmup": 2, "theta": 0.5, "t_k": 2, "noise_rate_source": "given", "noise_rates": [0.1, 0.2, 0.3, 0.1, 0.2]},
    "disc": {"warmup": 1, "mixup_alpha": 0.0},
}


def labels():
    g = torch.Generator().manual_seed(11)
    clean = (torch.rand(N, C, generator=g) < 0.3).to(torch.uint8)
    flip = torch.rand(N, C, generator=g) < 0.2
    return torch.where(flip, 1 - clean, clean), clean


def global_logits(method, epoch: int, step: int, batch_size: int) -> list[list[torch.Tensor]]:
    """The global batch's logits of every network and view: the same in every process."""
    g = torch.Generator().manual_seed(epoch * 1000 + step)
    return [[torch.randn(batch_size, C, generator=g) * 3 for _ in range(method.num_views)] for _ in range(method.num_networks)]


def run_method(name: str, world: World) -> dict:
    observed, clean = labels()
    cfg = tiny_config(method={"name": name, **METHODS[name]})
    method = build_method(cfg, observed, clean)
    selections = []
    if type(method).select is not type(method).__mro__[-2].select:  # record what `select` picks
        select = method.select

        def recording_select(indices, logits):
            out = select(indices, logits)
            selections.append([(s.targets.clone(), None if s.mask is None else s.mask.clone()) for s in out])
            return out

        method.select = recording_select
    sampler = EvenBatches(N, B, seed=5, world=world)
    record = {"loss": [], "grads": [], "digest": [], "stats": [], "selections": selections}
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        method.begin_epoch(epoch)
        full_sampler = EvenBatches(N, B, seed=5)
        full_sampler.set_epoch(epoch)
        for step, (local_idx, full_idx) in enumerate(zip(sampler, full_sampler)):
            logits = global_logits(method, epoch, step, len(full_idx))
            local = [[world.local_slice(z).clone().requires_grad_(True) for z in per_view] for per_view in logits]
            indices, gathered = world.gather_batch(torch.tensor(local_idx), local)  # what the trainer calls
            assert indices.tolist() == full_idx  # the gathered batch is the global batch, in order
            loss = method.loss(Batch(indices, [], gathered, None))
            (loss * world.size).backward()
            record["loss"].append(loss.item())
            record["grads"].append([[z.grad.clone() / world.size for z in per_view] for per_view in local])
        record["stats"].append(method.end_epoch(epoch))
        record["digest"].append(state_digest(method.state_dict()))
    return record


def worker(rank: int, port: int, name: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        world = World.current()
        torch.save(run_method(name, world), f"{out_dir}/rank{rank}.pt")
        assert world.same_everywhere(state_digest({"rank": rank})) is False  # the check can fail
    finally:
        dist.barrier()  # both processes done with every collective before either tears its connections down
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_slices_rebuild_every_global_batch():
    full = list(EvenBatches(N, B, seed=2))
    parts = [list(EvenBatches(N, B, seed=2, world=World(r, 3))) for r in range(3)]
    assert [sum((p[i] for p in parts), []) for i in range(len(full))] == full


@pytest.mark.parametrize("name", list(METHODS))
def test_two_workers_select_and_learn_as_one(name, tmp_path):
    one = run_method(name, World())
    mp.spawn(worker, args=(free_port(), name, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank, rec in enumerate(ranks):
        assert rec["digest"] == one["digest"], f"rank {rank}: method state differs from the 1-worker run"
        assert rec["loss"] == pytest.approx(one["loss"], rel=1e-6)
        assert [s["corrections"] for s in rec["stats"]] == [s["corrections"] for s in one["stats"]]
        for (targets, mask), (t1, m1) in ((s, s1) for sel, sel1 in zip(rec["selections"], one["selections"]) for s, s1 in zip(sel, sel1)):
            assert torch.equal(targets, t1) and (mask is None) == (m1 is None) and (mask is None or torch.equal(mask, m1))
        # this worker's gradients are its slice of the 1-worker gradients
        for step, grads in enumerate(rec["grads"]):
            for net, per_view in enumerate(grads):
                for view, g in enumerate(per_view):
                    expected = World(rank, 2).local_slice(one["grads"][step][net][view])
                    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-7)
    assert len(one["selections"]) > 0 or name in ("asl", "disc")
    assert len(set(one["digest"])) > 1 or name in ("asl", "coteaching")  # stateful methods: the state changes
