"""A review sheet (`mhss-audit --review FILE.csv [--sample N]`): the audit's suspects, most likely wrong first,
then every entry of N images drawn at random (an unbiased measure of the noise), each with an empty
`verdict` to fill in (mhss_ray/verdicts.py reads it back as `noise.verified`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserError
from ..verdicts import SHEET_COLUMNS, image_names, split_fingerprint


def review_sheet(trainer, suspects: pd.DataFrame, sample: int, seed: int) -> pd.DataFrame:
    """`suspects`: the audit's table (apply/audit.py), in its order; `sample`: images to draw at random."""
    n, c = trainer.observed.shape
    if not 0 <= sample <= n:
        raise UserError(f"--sample: expected 0 to {n} (the training images), got {sample}")
    names = trainer.data.class_names
    observed = trainer.observed.cpu().numpy()
    image_name = image_names(trainer.data)  # relative to the dataset folder: the sheet survives a move
    drawn = np.sort(np.random.default_rng([seed, 31]).choice(n, size=sample, replace=False)) if sample else np.array([], int)
    in_sample = set(drawn.tolist())
    rows = []
    listed = set()
    for rank, s in enumerate(suspects.to_dict("records"), start=1):  # by column name: `class` is a keyword
        r = int(s["row"])
        listed.add((r, s["class"]))
        rows.append((r, s["class"], int(s["observed"]), int(s["proposed"]), True, rank, r in in_sample, float(s["confidence"])))
    for r in drawn.tolist():
        for k, name in enumerate(names):
            if (r, name) not in listed:
                rows.append((r, name, int(observed[r, k]), None, False, None, True, None))
    fingerprint = split_fingerprint(trainer.data)
    table = pd.DataFrame(
        {
            "dataset": trainer.cfg.data.name,
            "split": fingerprint,
            "image": [image_name(r[0]) for r in rows],
            "row": [r[0] for r in rows],
            "class": [r[1] for r in rows],
            "observed": [r[2] for r in rows],
            "proposed": pd.array([r[3] for r in rows], dtype="Int64"),
            "suspect": ["yes" if r[4] else "no" for r in rows],
            "suspect_rank": pd.array([r[5] for r in rows], dtype="Int64"),
            "random_sample": ["yes" if r[6] else "no" for r in rows],
            "confidence": [r[7] for r in rows],
            "verdict": "",
        },
        columns=list(SHEET_COLUMNS),
    )
    return table
