"""When memorisation starts, from what a user has (`method.onset: plateau`, docs/methods.md "The onset").

Each forgetting network holds out its own fold of the training images (methods/estimated.py) and, after
every epoch, predicts their plain views; the mAP of those predictions against the observed (noisy) labels
rises while the network learns what generalises. Once it has not reached a new best for `patience` epochs,
the network has started to fit what does not generalise (the noise among it): the onset is the next epoch.

A plateau counts only once the network has learnt something: its best held-out mAP has gained LEARNT of
the room above its first epoch's (100 - first). From scratch a network can stall for its first epochs at
chance level before it learns; a plateau there is that slow start, not memorisation (measured: seed 2 of
the 1,000-image cell stalled at 26-28 mAP for 3 epochs, the onset came at epoch 4, and MHSS ended at 59.94
against ASL's 79.75; in every other run the onset came 45-57 points above the first epoch)."""

from __future__ import annotations


LEARNT = 0.1  # the share of the room above the first epoch's held-out mAP the best must have gained


class PlateauOnset:
    def __init__(self, patience: int):
        self.patience = patience
        self.scores: list[float] = []

    def update(self, score: float) -> bool:
        """Record this epoch's held-out mAP; True when the onset has come (no new best for `patience` epochs)."""
        self.scores.append(score)
        best = max(range(len(self.scores)), key=self.scores.__getitem__)  # the first best: a tie is no progress
        first = self.scores[0]
        if self.scores[best] < first + LEARNT * (100.0 - first):  # still at its start: nothing learnt to memorise past
            return False
        return len(self.scores) - 1 - best >= self.patience

    def state_dict(self) -> dict:
        return {"scores": list(self.scores)}

    def load_state_dict(self, state: dict) -> None:
        self.scores = list(state["scores"])
