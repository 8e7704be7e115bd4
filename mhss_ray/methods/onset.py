"""When memorisation starts, from what a user has (`method.onset: plateau`, docs/methods.md "The onset").

Each forgetting network holds out its own fold of the training images (methods/estimated.py) and, after
every epoch, predicts their plain views; the mAP of those predictions against the observed (noisy) labels
rises while the network learns what generalises. Once it has not reached a new best for `patience` epochs,
the network has started to fit what does not generalise (the noise among it): the onset is the next epoch."""

from __future__ import annotations


class PlateauOnset:
    def __init__(self, patience: int):
        self.patience = patience
        self.scores: list[float] = []

    def update(self, score: float) -> bool:
        """Record this epoch's held-out mAP; True when the onset has come (no new best for `patience` epochs)."""
        self.scores.append(score)
        best = max(range(len(self.scores)), key=self.scores.__getitem__)  # the first best: a tie is no progress
        return len(self.scores) - 1 - best >= self.patience

    def state_dict(self) -> dict:
        return {"scores": list(self.scores)}

    def load_state_dict(self, state: dict) -> None:
        self.scores = list(state["scores"])
