"""Data-parallel training without changing what a method sees (ARCHITECTURE.md, "Rules of the house").

With W workers each one trains on a contiguous slice of every global batch. Before the method
selects, every worker gathers the batch's sample indices and all networks' logits, so the method
ranks the entries of the *global* batch, exactly as one worker would, and updates its per-sample
state (histories, thresholds, corrected labels) identically on every worker. Only the worker's own
slice of the gathered logits carries gradients; the loss is the global batch's loss, scaled by W
because DDP averages the gradients of the workers.

Uses `torch.distributed` only (Ray Train sets the process group up); nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> "World":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def local_slice(self, batch: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous part of a global batch (sizes differ by at most one)."""
        return torch.tensor_split(batch, self.size)[self.rank]

    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """Concatenate every worker's rows in rank order; this worker's rows keep their gradient."""
        if not self.parallel:
            return local
        n = torch.tensor([local.shape[0]], device=local.device)
        sizes = [torch.zeros_like(n) for _ in range(self.size)]
        dist.all_gather(sizes, n)
        sizes = [int(s) for s in sizes]
        padded = local.detach()
        if local.shape[0] < max(sizes):  # all_gather wants equal shapes
            pad = padded.new_zeros((max(sizes) - local.shape[0], *local.shape[1:]))
            padded = torch.cat([padded, pad])
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded.contiguous())
        parts = [p[:s] for p, s in zip(parts, sizes)]
        parts[self.rank] = local
        return torch.cat(parts)

    def gather_batch(self, indices: torch.Tensor, logits: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """The global batch's indices and every network's and view's logits ([network][view] -> B x C),
        in two collectives per step (the logits travel side by side in one tensor)."""
        if not self.parallel:
            return indices, logits
        widths = [[z.shape[1] for z in per_view] for per_view in logits]
        flat = self.gather_rows(torch.cat([z for per_view in logits for z in per_view], dim=1))
        parts = iter(flat.split([w for per_view in widths for w in per_view], dim=1))
        return self.gather_rows(indices), [[next(parts) for _ in per_view] for per_view in widths]

    def same_everywhere(self, digest: str) -> bool:
        """True when every worker holds the same digest (one small all_gather)."""
        if not self.parallel:
            return True
        mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
        if dist.get_backend() == "nccl":
            mine = mine.cuda()
        everyone = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(everyone, mine)
        return all(torch.equal(mine, other) for other in everyone)


def state_digest(state) -> str:
    """A short hash of a (nested) method state of tensors, numbers and lists."""
    h = hashlib.sha256()

    def visit(x) -> None:
        if isinstance(x, torch.Tensor):
            h.update(str((x.dtype, tuple(x.shape))).encode())
            h.update(x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if x.numel() else b"")
        elif isinstance(x, dict):
            for key in sorted(x):
                h.update(str(key).encode())
                visit(x[key])
        elif isinstance(x, (list, tuple)):
            for item in x:
                visit(item)
        else:
            h.update(repr(x).encode())

    visit(state)
    return h.hexdigest()[:16]
