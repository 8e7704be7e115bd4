"""Image files that cannot be decoded: they come back from the dataset with a negative index
(data/images.py); a run stops with the file's name, or leaves them out (`data.on_bad_image: skip`)."""

from __future__ import annotations

import torch

from ..data.images import original_index
from ..errors import UserError


class BadImages:
    def __init__(self, policy: str, announce: bool = True):
        self.policy = policy  # data.on_bad_image: error or skip
        self.announce = announce  # print each skipped file once (the first worker speaks for the run)
        self.skipped: set[str] = set()

    def drop(self, dataset, images, indices: torch.Tensor):
        """(images, indices, how many were dropped) of one batch without its undecodable rows."""
        bad = indices < 0
        if not bool(bad.any()):
            return images, indices, 0
        rows = [original_index(int(i)) for i in indices[bad]]
        if self.policy == "error":
            raise UserError(f"{dataset.failure(rows[0])}; set data.on_bad_image: skip to leave such images out")
        for r in rows:
            path = dataset.path(r)
            if path not in self.skipped and self.announce:
                print(f"skipping unreadable image {path}", flush=True)
            self.skipped.add(path)
        good = ~bad
        images = [v[good] for v in images] if isinstance(images, (list, tuple)) else images[good]
        return images, indices[good], int(bad.sum())
