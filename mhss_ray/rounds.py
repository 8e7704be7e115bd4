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

    def by_epoch(self) -> list[Round]:
        """The round of every epoch, in order (the loop reads it; a round begins where `epoch == round.first`)."""
        starts = self.starts
        ends = starts[1:] + [self.epochs]
        return [Round(r, first, end - first) for r, (first, end) in enumerate(zip(starts, ends)) for _ in range(first, end)]
