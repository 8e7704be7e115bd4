"""The run's networks: one timm network per network the method trains, created with reproducible seeds,
their EMAs, the wrappers the training step calls (DDP with several workers, torch.compile), and their
state in a checkpoint."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..errors import UserError
from .distributed import World
from .models import check_input_size, create_ema, create_network
from .runtime import Runtime


class Networks:
    def __init__(self, cfg: RunConfig, count: int, num_classes: int, in_chans: int, rt: Runtime, world: World | None = None):
        world = world or World()
        self.cfg, self.rt, self.num_classes, self.in_chans = cfg, rt, num_classes, in_chans
        self.nets: list[torch.nn.Module] = []
        for k in range(count):
            net = self.fresh(k, 0)
            if rt.channels_last:
                net = net.to(memory_format=torch.channels_last)
            if k == 0:  # a model with a fixed input size fails here with one line
                check_input_size(net, cfg.model.name, in_chans, cfg.data.image_size, rt.device)
            self.nets.append(net)
        self.emas = self._new_emas()
        self.train_nets = self.nets  # what the training step calls: DDP wrappers with several workers
        if world.parallel:
            from torch.nn.parallel import DistributedDataParallel

            dev = rt.device
            ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
            self.train_nets = [DistributedDataParallel(n, device_ids=ids) for n in self.nets]
        if rt.compile:  # the training step only; checkpoints and evaluation use the plain modules
            self.train_nets = [torch.compile(n) for n in self.train_nets]

    def __len__(self) -> int:
        return len(self.nets)

    def fresh(self, k: int, round_index: int) -> torch.nn.Module:
        """Network `k` as drawn for round `round_index` (each round of method.restarts draws its own)."""
        torch.manual_seed(self.cfg.seed * 1000 + k + 100_003 * round_index)  # distinct, reproducible initialisations
        return create_network(self.cfg.model, self.num_classes, self.in_chans).to(self.rt.device)

    def _new_emas(self) -> list:
        return [create_ema(n, self.cfg.model.ema_decay) for n in self.nets] if self.cfg.model.ema else []

    def reinitialise(self, round_index: int) -> None:
        """SELFIE's restart: fresh weights, loaded in place (DDP wrappers and the optimiser's parameter lists
        stay valid), and fresh EMAs."""
        for k, net in enumerate(self.nets):
            net.load_state_dict(self.fresh(k, round_index).state_dict())
        self.emas = self._new_emas()

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for n in self.nets for p in n.parameters()]

    def update_emas(self) -> None:
        for ema, net in zip(self.emas, self.nets):
            ema.update(net)

    def evaluated(self) -> torch.nn.Module:
        """The network whose predictions are evaluated: the first one (its EMA when enabled)."""
        return self.emas[0].module if self.emas else self.nets[0]

    def each_evaluated(self) -> list[torch.nn.Module]:
        """Every network as it is evaluated (its EMA when enabled)."""
        return [ema.module for ema in self.emas] or self.nets

    def state_dict(self) -> dict:
        return {"networks": [n.state_dict() for n in self.nets], "emas": [e.state_dict() for e in self.emas]}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's networks and EMAs (its other entries are ignored here)."""
        if len(state["networks"]) != len(self.nets) or len(state["emas"]) != len(self.emas):
            raise UserError("checkpoint: it was written by a run with another method or EMA setting")
        for net, sd in zip(self.nets, state["networks"]):
            net.load_state_dict(sd)
        for ema, sd in zip(self.emas, state["emas"]):
            ema.load_state_dict(sd)
