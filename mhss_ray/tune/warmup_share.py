"""A shared warm-up (`tune.share_warmup: auto`): the epochs every searched trial trains alike, trained once.

A method with a warm-up (CoSELFIE, MHSS) trains every entry alike until the warm-up ends, and keys such
as α, θ and the noise rates act only after it: trials that differ only in those keys (the method's
registry entry names them, `after_warmup_keys`) train bit-identical warm-ups. A prefix run, one Tune
trial of its own stored in the study's `warmup_prefix` folder, trains the longest warm-up of the space
once and keeps a fork checkpoint after every epoch where a searched warm-up may end. Each searched trial
then starts from the fork at its own warm-up's end, first reporting the prefix's rows of the epochs
before it (ASHA, the curves and the analysis see every epoch), and trains on. The baseline arms train on
their own. A forked trial's metrics equal those of the same trial run alone, bit for bit on CPU
(tests/tune/test_warmup_share.py).

With `method.onset: plateau` a trial's warm-up ends at its onset, which no one knows before training: the
prefix run trains until its own onset (or the schedule's end, when none comes) and keeps one fork there,
after the last epoch that did not select. The keys that act after the warm-up cannot move the onset (it is
read from the held-out images of a network that has not yet selected), so every searched trial's onset is
the prefix's, and the study hands the fork's epoch to its trials once the prefix is done (`with_fork`).

The forks live beside the study's own files (a local folder or a bucket, through pyarrow's
filesystems); each is complete once its `done.json` is written, so a prefix killed while saving one is
trained again from its last Tune checkpoint by `mhss-tune --resume`. `done.json` records what the fork
is (the study, a fingerprint of its base config, the seed, the epoch) and a digest of every file: a
trial starts from a fork only when all of them match, and a damaged or foreign fork makes
`mhss-tune --resume` train the prefix again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from ..config import RunConfig, from_dict, set_key
from ..errors import UserError
from ..registry import METHODS
from .distributions import Dimension

PREFIX_KEY = "warmup_prefix"  # the one extra key of the prefix run's point
FOLDER = "warmup_prefix"  # in the study folder: the prefix's Tune experiment and its forks
DONE_FILE = "done.json"
DAMAGED = "the shared warm-up's checkpoint after epoch"  # how a trial's refusal to fork starts (damaged_line)


@dataclass(frozen=True)
class WarmupPlan:
    epochs: int  # the prefix run's length: the longest warm-up of the space
    forks: tuple[int, ...]  # the epochs after which a fork checkpoint is kept: every warm-up a trial can have
    trials: int  # the searched trials that start from a fork
    searched_warmup: bool  # method.warmup is searched: the prefix runs with the longest
    at_onset: bool = False  # method.onset: plateau: one fork, at the prefix's onset (forks is empty until it is known)

    def point(self) -> dict:
        return {PREFIX_KEY: True, **({"method.warmup": self.epochs} if self.searched_warmup else {})}

    def with_fork(self, epoch: int) -> "WarmupPlan":
        """The plan once the prefix found its onset after `epoch`: the prefix's length and the trials' one fork."""
        return dataclasses.replace(self, epochs=epoch, forks=(epoch,))

    def fork_here(self, epoch: int, onset: int | None, last: int) -> bool:
        """Whether the prefix keeps a fork after `epoch` (1-based). At the onset: the last epoch before the method
        selects (`onset`: the method's first selecting epoch, 0-based), or the schedule's `last` if none came."""
        if not self.at_onset:
            return epoch in self.forks
        return onset == epoch or (onset is None and epoch == last)

    def saved(self) -> tuple[int, int]:
        """The trial-epochs it saves, at the least and at the most (every trial at the shortest or longest warm-up)."""
        return self.trials * self.forks[0] - self.epochs, self.trials * self.forks[-1] - self.epochs

    def describe(self) -> str:
        if self.at_onset and not self.forks:
            return (
                f"shared warm-up: one prefix run trains until its onset (method.onset: plateau; at most {self.epochs} epochs) once "
                f"and keeps a checkpoint there; the {self.trials} searched trials start from it (the keys they search act only "
                "after the onset; the baseline arms train their own)"
            )
        low, high = self.saved()
        forks = f"epoch {self.forks[0]}" if len(self.forks) == 1 else f"epochs {', '.join(map(str, self.forks[:-1]))} and {self.forks[-1]}"
        saved = f"{low}" if low == high else f"{low}-{high}"
        return (
            f"shared warm-up: one prefix run trains epochs 1-{self.epochs} once and keeps a checkpoint after {forks}; "
            f"the {self.trials} searched trials start from the one at their own warm-up's end "
            f"({saved} trial-epochs saved; the baseline arms train their own)"
        )


def plan_warmup(share: str, base: dict, base_cfg: RunConfig, dims: list[Dimension], trials: int) -> tuple[WarmupPlan | None, str]:
    """(the plan, '') when the searched trials can share their warm-up, else (None, why not)."""
    if share == "off":
        return None, "shared warm-up: off (tune.share_warmup)"
    spec = METHODS.get(base_cfg.method.name)
    if spec.warmup_epochs is None or not spec.after_warmup_keys:
        return None, f"shared warm-up: none ({base_cfg.method.name} has no warm-up that trials share)"
    after = {f"method.{k}" for k in spec.after_warmup_keys}
    acting = sorted({d.key.split("[")[0] for d in dims} - after)
    if acting:
        return None, f"shared warm-up: none ({', '.join(acting)} change{'s' if len(acting) == 1 else ''} the warm-up itself)"
    if trials < 2:
        return None, "shared warm-up: none (fewer than 2 searched trials)"
    if getattr(base_cfg.method, "onset", "clock") == "plateau":  # method.warmup cannot be searched with it (config checks)
        return WarmupPlan(base_cfg.schedule.epochs, (), trials, False, at_onset=True), ""
    warmup_dim = next((d for d in dims if d.key == "method.warmup"), None)
    if warmup_dim is None:
        forks = {spec.warmup_epochs(base_cfg)}
    else:
        low, high = (int(v) for v in warmup_dim.bounds())
        forks = set()
        for value in (v for v in range(low, high + 1) if warmup_dim.inside(v)):
            config = {**base, "method": dict(base.get("method", {}))}
            set_key(config, "method.warmup", value)
            forks.add(spec.warmup_epochs(from_dict(RunConfig, config)))
    if min(forks) < 1:
        return None, "shared warm-up: none (a warm-up of 0 epochs)"
    ordered = tuple(sorted(forks))
    return WarmupPlan(ordered[-1], ordered, trials, warmup_dim is not None), ""


# ----------------------------------------------------------------------------- the forks in the study's storage


def fork_uri(study: str, epoch: int) -> str:
    return f"{study.rstrip('/')}/{FOLDER}/forks/epoch_{epoch}"


def fork_epochs(study: str) -> list[int]:
    """The epochs after which a finished fork (its record written) is in the study, sound or not."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(f"{study.rstrip('/')}/{FOLDER}/forks")
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    epochs = [int(i.base_name.removeprefix("epoch_")) for i in found if i.base_name.startswith("epoch_") and i.base_name[6:].isdigit()]
    return sorted(e for e in epochs if fork_ready(study, e))


def fork_ready(study: str, epoch: int) -> bool:
    """The fork after `epoch` was finished (its record written); fork_problem says whether it is sound."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(fork_uri(study, epoch))
    return fs.get_file_info(f"{path}/{DONE_FILE}").type == pyarrow.fs.FileType.File


def fork_identity(spec) -> dict:
    """What a fork must have been trained for: the study, its base config (a fingerprint) and the seed."""
    base = json.dumps(spec.base, sort_keys=True, default=str).encode()
    return {"study": spec.name, "config": hashlib.sha1(base).hexdigest()[:16], "seed": spec.base_config.seed}


def _digests(fs, path: str) -> dict[str, str]:
    """sha256 of every file in a fork folder but its record, by name relative to the folder."""
    import pyarrow.fs

    out = {}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True)):
        name = info.path[len(path) :].lstrip("/")
        if info.type != pyarrow.fs.FileType.File or name == DONE_FILE:
            continue
        h = hashlib.sha256()
        with fs.open_input_stream(info.path) as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        out[name] = h.hexdigest()
    return out


def fork_problem(study: str, epoch: int, identity: dict, at: str | None = None) -> str | None:
    """None when the fork after `epoch` is complete and is this study's; else what is wrong with it ('missing'
    when it was never finished, the damage or the foreign record otherwise). `at`: a local copy to judge instead."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(os.path.abspath(at) if at else fork_uri(study, epoch))
    if fs.get_file_info(f"{path}/{DONE_FILE}").type != pyarrow.fs.FileType.File:
        return "missing"
    try:
        with fs.open_input_stream(f"{path}/{DONE_FILE}") as f:
            record = json.loads(f.readall().decode())
        files = dict(record["files"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"its record {DONE_FILE} is unreadable or from an older version"
    for key, value in {**identity, "epoch": epoch}.items():
        if record.get(key) != value:
            return f"it was written for {key} {record.get(key)!r}, not {value!r} (another study, config, seed or epoch)"
    found = _digests(fs, path)
    for name in sorted(files.keys() | found.keys()):
        if name not in found:
            return f"its file {name} is gone"
        if files.get(name) != found[name]:
            return f"its file {name} was changed or cut short after it was written"
    return None


def save_fork(study: str, epoch: int, folder: str, identity: dict) -> None:
    """Copy the checkpoint folder written after `epoch` to its fork, then mark the fork complete with its record."""
    import pyarrow.fs

    uri = fork_uri(study, epoch)
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
        fs.delete_dir_contents(path)  # what a killed prefix left half-copied
    fs.create_dir(path, recursive=True)  # a local destination must exist (a bucket has no folders)
    pyarrow.fs.copy_files(folder, uri)
    local = pyarrow.fs.LocalFileSystem()
    record = {**identity, "epoch": epoch, "files": _digests(local, os.path.abspath(folder))}  # of what was meant, not what landed
    with fs.open_output_stream(f"{path}/{DONE_FILE}") as f:
        f.write(json.dumps(record, indent=1).encode())


def discard_forks(study: str, epochs) -> None:
    """Remove the forks after these epochs and the prefix's own Tune experiment, so that the prefix trains anew."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(f"{study.rstrip('/')}/{FOLDER}")
    for epoch in epochs:
        fs.delete_dir(f"{path}/forks/epoch_{epoch}")
    for info in fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True)):
        if info.base_name == "forks":
            continue
        if info.type == pyarrow.fs.FileType.Directory:
            fs.delete_dir(info.path)
        else:
            fs.delete_file(info.path)


def damaged_line(study: str, epoch: int, problem: str) -> str:
    return (
        f"{fork_uri(study, epoch)}: {DAMAGED} {epoch} cannot be used: {problem}; "
        "mhss-tune --resume (the same command with --resume) trains it again"
    )


def load_fork(study: str, epoch: int, folder: str, identity: dict) -> None:
    """Copy the fork after `epoch` into the local `folder`; the copy must be whole and this study's (the
    bytes the trial loads are the ones judged)."""
    import pyarrow.fs

    if not fork_ready(study, epoch):
        raise UserError(damaged_line(study, epoch, "it is missing"))
    os.makedirs(folder, exist_ok=True)
    pyarrow.fs.copy_files(fork_uri(study, epoch), folder)
    problem = fork_problem(study, epoch, identity, at=folder)
    if problem is not None:
        raise UserError(damaged_line(study, epoch, problem))
