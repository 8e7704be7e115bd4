"""method.restarts' rounds, in one place: a run of E epochs with R restarts trains R + 1 rounds of
E // (R + 1) epochs (the last one takes the remainder). Each later round re-initialises the networks and
the optimiser; the method counts its warm-up and forget-rate ramp from the round's first epoch.
Epochs are 0-based here. No torch: the config checks use it too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Round:
    index: int  # 0 for the first round (the whole run without restarts)
    first: int  # its first epoch, 0-based
    epochs: int  # its length


@dataclass(frozen=True)
class RoundSchedule:
    epochs: int
    restarts: int = 0

    @classmethod
    def of(cls, cfg) -> "RoundSchedule":
        return cls(cfg.schedule.epochs, cfg.method.restarts)

    @property
    def length(self) -> int:
        """Epochs of a round but the last: what the warm-up is measured against."""
        return self.epochs // (self.restarts + 1)

    @property
    def starts(self) -> list[int]:
        """The epochs at which the rounds begin ([0] without restarts)."""
        return [r * self.length for r in range(self.restarts + 1)]

    def round_of(self, epoch: int) -> Round:
        starts = self.starts
        r = max(i for i, start in enumerate(starts) if start <= epoch)
        end = starts[r + 1] if r + 1 < len(starts) else self.epochs
        return Round(r, starts[r], end - starts[r])

    def method_epoch(self, epoch: int) -> int:
        """Epoch `epoch` as the method counts it: from its round's first epoch."""
        return epoch - self.round_of(epoch).first

    def restarts_at(self, epoch: int) -> bool:
        """Whether a new round (a restart) begins at `epoch`."""
        return epoch > 0 and epoch in self.starts
