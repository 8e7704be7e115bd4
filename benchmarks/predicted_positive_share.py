"""How often a network trained with ASL puts p > 0.5 on a training entry, against BCE (ASL with no
focusing), epoch by epoch: the prediction CoSELFIE/MHSS record in their histories (METHODS.md 5).

    python benchmarks/predicted_positive_share.py          # benchmarks/base.yaml, complex noise 0.2, CPU

Prints one row per (loss, epoch) and writes results/predicted_positive_share.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mhss_ray.config import RunConfig, from_dict, read_yaml  # noqa: E402
from mhss_ray.train.loop import Trainer  # noqa: E402

LOSSES = {"ASL (gamma- 4, clip 0.05)": {"gamma_neg": 4.0, "clip": 0.05}, "BCE (gamma- 0, clip 0)": {"gamma_neg": 0.0, "clip": 0.0}}


def main(epochs: int = 6) -> int:
    rows = []
    for label, loss in LOSSES.items():
        base = read_yaml(REPO / "benchmarks" / "base.yaml")
        base["data"]["n_train"] = 2000
        base["noise"] = {"mode": "complex", "rate": 0.2}
        base["schedule"] = {"epochs": 15}
        base["loss"] = loss
        base["runtime"] = {"device": "cpu"}
        t = Trainer(from_dict(RunConfig, base))
        clean = torch.from_numpy(t.data.train.labels)
        for epoch in range(epochs):
            t.train_one_epoch(epoch)
            net = t.networks.nets[0].eval()
            with torch.no_grad():
                p = torch.cat([torch.sigmoid(net(x)) for x, _ in DataLoader(t.data.train.images, batch_size=256)])
            net.train()
            row = {
                "loss": label,
                "epoch": epoch + 1,
                "share_p_above_half": float((p > 0.5).float().mean()),
                "share_truly_positive": float(clean.float().mean()),
                "mean_p_clean_negatives": float(p[clean == 0].mean()),
            }
            rows.append(row)
            print(
                f"{label:>26} | epoch {epoch + 1} | p > 0.5 on {row['share_p_above_half']:.3f} of entries | truly positive "
                f"{row['share_truly_positive']:.3f} | mean p on clean negatives {row['mean_p_clean_negatives']:.3f}",
                flush=True,
            )
    out = REPO / "benchmarks" / "results" / "predicted_positive_share.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print("wrote benchmarks/results/predicted_positive_share.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
