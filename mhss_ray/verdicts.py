"""Review sheets: the entries people checked, and what they said (`noise.verified`).

`mhss-audit --review FILE.csv` writes a sheet (apply/review_sheet.py): one row per training entry (image,
class) with the observed label, the label the networks propose, whether the entry is a suspect or part
of the random sample, and an empty `verdict` to fill in: is the observed label `correct`, `wrong`, or are
you `unsure`. This module reads filled sheets back for training:

- a decided entry trains with its verified label (the observed one if `correct`, the other if `wrong`),
  in every network, never rejected or refurbished (methods/base.py `protect`);
- the random sample's decided entries measure the noise without bias: per class and per polarity, with
  95% Wilson intervals (`method.noise_rate_source: verified` takes its rates from them);
- the suspects' verdicts measure the audit's precision on real data.

A sheet names its dataset and a fingerprint of the training split it was written for, so a sheet of
another dataset, size, seed or file list is refused, as is any row the split does not have.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

VERDICTS = ("correct", "wrong", "unsure")
SHEET_COLUMNS = (
    "dataset", "split", "image", "row", "class", "observed", "proposed", "suspect", "suspect_rank", "random_sample",
    "confidence", "verdict",
)  # fmt: skip
REQUIRED = ("dataset", "split", "image", "row", "class", "observed", "random_sample", "suspect", "verdict")


def split_fingerprint(data) -> str:
    """A short digest of the training split's identity: its file names, or its pixels and labels for an
    in-memory dataset (a different size, seed or validation carve gives another)."""
    h = hashlib.sha1()
    images = data.train.images
    if hasattr(images, "names"):  # image files, by their names under data.root (the root may move)
        for name in images.names.to_pylist():
            h.update(str(name).encode() + b"\0")
    elif hasattr(images, "images"):  # in memory
        h.update(np.ascontiguousarray(images.images.numpy()).tobytes())
    h.update(np.ascontiguousarray(data.train.labels).tobytes())
    return f"train-{h.hexdigest()[:12]}"


def image_names(data):
    """Row -> the name a sheet gives its training image: the file's path relative to the dataset folder (a
    sheet survives the dataset moving), or for an in-memory dataset a digest of the image's pixels."""
    images = data.train.images
    if hasattr(images, "names"):
        return lambda r: str(images.names[r].as_py())
    return lambda r: "pixels-" + hashlib.sha1(np.ascontiguousarray(images.images[r].numpy()).tobytes()).hexdigest()[:12]


def same_image(written: str, name: str) -> bool:
    """The sheet's image is the row's: as written, or an absolute path (older sheets) that ends with its name."""
    written = written.strip().replace("\\", "/")
    return written == name or (written.startswith("/") and written.endswith("/" + name.lstrip("/")))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share k / n (sound at k = 0 and for small n)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Verdicts:
    """Decided entries (`unsure` and blank verdicts left out) of every sheet, one per entry."""

    rows: np.ndarray  # entry row (training split index)
    cols: np.ndarray  # entry class index
    observed: np.ndarray  # uint8, the observed label before any verdict
    labels: np.ndarray  # uint8, the verified label
    sample: np.ndarray  # bool, part of the random sample
    suspect: np.ndarray  # bool, listed by the audit
    sample_images: int  # images in the random sample (each with all its classes)
    files: list[str]

    def mask(self, n: int, c: int) -> np.ndarray:
        m = np.zeros((n, c), dtype=bool)
        m[self.rows, self.cols] = True
        return m

    def apply(self, observed: np.ndarray) -> int:
        """Write the verified labels into `observed` (N x C); returns how many changed."""
        changed = int((observed[self.rows, self.cols] != self.labels).sum())
        observed[self.rows, self.cols] = self.labels
        return changed

    def sample_rates(self, c: int) -> dict:
        """The noise measured on the random sample: per class eps_c with its interval, and per polarity (the
        wrong share among the observed negatives, then among the observed positives) as a 2 x C array."""
        if not self.sample.any():
            raise UserError(
                "method.noise_rate_source: verified measures the rates on a random sample, and noise.verified holds none "
                f"({', '.join(self.files)}); write a sheet with mhss-audit --review FILE.csv --sample N"
            )
        s = self.sample
        wrong = self.labels[s] != self.observed[s]
        eps_c, low, high, pm = np.zeros(c), np.zeros(c), np.zeros(c), np.zeros((2, c))
        for k in range(c):
            here = self.cols[s] == k
            n, w = int(here.sum()), int(wrong[here].sum())
            eps_c[k] = w / n if n else 0.0
            low[k], high[k] = wilson(w, n)
            for polarity in (0, 1):
                side = here & (self.observed[s] == polarity)
                pm[polarity, k] = float(wrong[side].mean()) if side.any() else 0.0
        return {"eps_c": eps_c, "low": low, "high": high, "eps_pm": pm, "images": self.sample_images}

    def audit_precision(self) -> dict | None:
        """The share of the decided suspects whose observed label was wrong, with its interval."""
        s = self.suspect
        if not s.any():
            return None
        n, w = int(s.sum()), int((self.labels[s] != self.observed[s]).sum())
        low, high = wilson(w, n)
        return {"suspects_checked": n, "suspects_wrong": w, "precision": w / n, "low": low, "high": high}


def _flag(value: str, where: str, column: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "true", "1"):
        return True
    if v in ("no", "false", "0", ""):
        return False
    raise UserError(f"{where}: {column} must be yes or no, got {value!r}")


def read_verdicts(
    paths: list[str], dataset: str, fingerprint: str, class_names: list[str], observed: np.ndarray, image_name=None
) -> Verdicts:
    """Every sheet of `noise.verified`, checked against the training split it must belong to; `image_name`
    (row -> name, image_names) checks that each row's image is the one the sheet names."""
    import pandas as pd

    classes = {name: i for i, name in enumerate(class_names)}
    n = observed.shape[0]
    seen: dict[tuple[int, int], tuple[int, str]] = {}  # entry -> (verified label, where)
    # a later round's sheet (written from a run trained on earlier sheets) shows their verified labels
    shown_before = observed.copy()
    decided, sample_images = [], set()
    for path in paths:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"noise.verified: {path}: no such file")
        try:
            sheet = pd.read_csv(file, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"noise.verified: {path}: not a review sheet CSV ({str(exc).splitlines()[0][:120]})") from None
        missing = [c for c in REQUIRED if c not in sheet.columns]
        if missing:
            raise UserError(f"noise.verified: {path}: no {', '.join(missing)} column (write sheets with mhss-audit --review)")
        if not sheet["verdict"].str.strip().any():
            raise UserError(
                f"noise.verified: {path}: the verdict column is empty; fill in {' / '.join(VERDICTS)} for the entries you checked"
            )
        for i, rec in enumerate(sheet.to_dict("records")):
            where = f"{path}, row {i + 2}"  # the spreadsheet's own numbering (row 1 is the header)
            if rec["dataset"] != dataset:
                raise UserError(f"{where}: the sheet is of dataset {rec['dataset']!r}, this run trains on {dataset!r}")
            if rec["split"] != fingerprint:
                raise UserError(
                    f"{where}: the sheet was written for another training split ({rec['split']}, this run's is {fingerprint}: "
                    "another split, size, seed or file list)"
                )
            try:
                r = int(rec["row"])
            except ValueError:
                raise UserError(f"{where}: row must be a whole number, got {rec['row']!r}") from None
            if not 0 <= r < n:
                raise UserError(f"{where}: row {r} is not an image of the training split (0-{n - 1})")
            if image_name is not None and not same_image(rec["image"], image_name(r)):
                # a row shifted by a sort or edited by hand: the row number alone would flip another image's label
                raise UserError(
                    f"{where}: image {rec['image']!r} is not row {r}'s training image ({image_name(r)}); "
                    "the sheet was sorted or edited (keep each row's image and row number together)"
                )
            if rec["class"] not in classes:
                raise UserError(f"{where}: unknown class {rec['class']!r} (the classes are {', '.join(class_names)})")
            k = classes[rec["class"]]
            shown = rec["observed"].strip()
            if shown not in ("0", "1") or int(shown) not in (int(observed[r, k]), int(shown_before[r, k])):
                raise UserError(
                    f"{where}: observed {rec['observed']!r} for row {r}, class {rec['class']}, but this run's label there is "
                    f"{int(observed[r, k])} (a sheet of other labels or other noise?)"
                )
            verdict = rec["verdict"].strip().lower()
            if verdict not in VERDICTS + ("",):
                raise UserError(f"{where}: verdict must be one of {', '.join(VERDICTS)} (or blank), got {rec['verdict']!r}")
            in_sample = _flag(rec["random_sample"], where, "random_sample")
            if in_sample:
                sample_images.add(r)
            if verdict in ("", "unsure"):
                continue
            label = int(shown) if verdict == "correct" else 1 - int(shown)
            before = seen.get((r, k))
            if before is not None:
                if before[0] != label:
                    raise UserError(
                        f"{where}: row {r}, class {rec['class']} is {verdict} here (label {label}) and label {before[0]} in {before[1]}"
                    )
                continue
            seen[(r, k)] = (label, where)
            decided.append((r, k, int(observed[r, k]), label, in_sample, _flag(rec["suspect"], where, "suspect")))
        for (r, k), (label, _) in seen.items():
            shown_before[r, k] = label
    arr = np.array(decided, dtype=np.int64).reshape(-1, 6)
    return Verdicts(
        rows=arr[:, 0],
        cols=arr[:, 1],
        observed=arr[:, 2].astype(np.uint8),
        labels=arr[:, 3].astype(np.uint8),
        sample=arr[:, 4].astype(bool),
        suspect=arr[:, 5].astype(bool),
        sample_images=len(sample_images),
        files=[str(p) for p in paths],
    )


def apply_verdicts(cfg, data, labels: np.ndarray, clean: np.ndarray) -> tuple[Verdicts, np.ndarray, np.ndarray, dict, dict]:
    """noise.verified for a run (the trainer calls it): (the verdicts, the observed labels with the verified ones
    written in, the clean labels (under real noise the random sample's entries become known), the build_method
    keywords (the sample's rates, for noise_rate_source verified), what it measured for the summary)."""
    names = data.class_names
    v = read_verdicts(cfg.noise.verified, cfg.data.name, split_fingerprint(data), names, labels, image_names(data))
    changed = v.apply(labels)
    if cfg.noise.mode == "real":
        clean[v.rows[v.sample], v.cols[v.sample]] = v.labels[v.sample]
    review = {"verified_entries": int(len(v.rows)), "labels_changed": changed, "sample_images": v.sample_images}
    precision = v.audit_precision()
    if precision is not None:
        review["audit_precision"] = precision
    measured = {}
    if v.sample.any():
        rates = v.sample_rates(len(names))
        review["sample_rates"] = {
            name: {"eps": float(rates["eps_c"][k]), "low": float(rates["low"][k]), "high": float(rates["high"][k])}
            for k, name in enumerate(names)
        }
        if cfg.method.noise_rate_source == "verified":
            measured = {"measured": rates}
    elif cfg.method.noise_rate_source == "verified":
        v.sample_rates(len(names))  # raises: no random sample to measure on
    return v, labels, clean, measured, review


def review_lines(review: dict, sheets: int) -> list[str]:
    """What noise.verified brought, for the start of a run."""
    lines = [
        f"verified labels: {review['verified_entries']} entries from {sheets} sheet(s), {review['labels_changed']} of them "
        "corrected; they train as verified, never rejected or refurbished"
    ]
    if "sample_rates" in review:
        shown = ", ".join(f"{n} {e['eps']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" for n, e in review["sample_rates"].items())
        lines.append(f"noise measured on {review['sample_images']} randomly sampled images, eps_c with 95% intervals: {shown}")
    if "audit_precision" in review:
        p = review["audit_precision"]
        lines.append(
            f"the audit's suspects, as reviewed: {p['suspects_wrong']} of {p['suspects_checked']} wrong, "
            f"precision {p['precision']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"
        )
    return lines
