"""What `mhss-tune --resume` checks and mends in a study before Tune restores it.

A driver killed at the wrong moment leaves a study's files out of step with each other: Tune writes its
experiment state, the trials' checkpoints and their result.json one after the other (in a bucket, one
upload after the other). Each mend here writes only inside the study folder, never removes a file,
and says what it did in one line.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from ..errors import UserError

RESULT_FILE = "result.json"  # Tune's per-trial table of reported results, one JSON row per epoch


def check_resumable(path: str) -> None:
    """The newest experiment state must parse: Tune would print a traceback and quietly start the
    study over (every trial from epoch 1) from a truncated one."""
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    names = sorted(
        PurePosixPath(e.path).name
        for e in fs.get_file_info(pyarrow.fs.FileSelector(inner.rstrip("/")))
        if PurePosixPath(e.path).name.startswith("experiment_state-")
    )
    if not names:
        return
    newest = f"{path.rstrip('/')}/{names[-1]}"
    try:
        with fs.open_input_stream(f"{inner.rstrip('/')}/{names[-1]}") as f:
            state = json.loads(f.readall().decode())
        ok = isinstance(state, dict) and "trial_data" in state and "runner_data" in state
    except (ValueError, OSError):
        ok = False
    if not ok:
        older = (
            f"; {len(names) - 1} older state file{'s' if len(names) > 2 else ''} there: move this one aside to resume from it"
            if len(names) > 1
            else ""
        )
        raise UserError(
            f"{newest}: corrupt experiment state (truncated?), so the study cannot resume from it{older}; or --overwrite to start over"
        )


def repair_before_resume(path: str) -> list[str]:
    """Every mend below, on the study's trials as Tune's saved state knows them; one line per mend."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(path).trials
    return repair_search_state(path) + repair_checkpoints(path, trials) + recover_result_rows(path, trials)


# The search algorithm's saved state, one file per driver session (Tune loads the newest by name)
SEARCH_STATES = ("basic-variant-state-", "search_gen_state-", "searcher-state-")


def repair_search_state(path: str) -> list[str]:
    """Tune copies its files from the driver's staging folder into the study one by one, each rewritten in
    place: a driver killed during that copy leaves empty or cut search-state files (every session's, since
    each copy rewrites them all). Tune then fails to load the newest, prints a traceback and starts the
    study over with no trial (seen in the three-kill test). The unreadable files are set aside (renamed
    `<name>.unreadable`, kept) so that Tune resumes the search from the newest readable one; with none left
    the study cannot resume its search, and says so."""
    import pyarrow.fs
    import ray.cloudpickle as cloudpickle

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    inner = inner.rstrip("/")
    lines = []
    entries = fs.get_file_info(pyarrow.fs.FileSelector(inner))
    names = sorted(PurePosixPath(e.path).name for e in entries if e.type == pyarrow.fs.FileType.File)
    for prefix in SEARCH_STATES:
        states = [n for n in names if n.startswith(prefix) and not n.endswith(".unreadable")]
        unreadable = []
        for name in reversed(states):  # newest first, as Tune picks
            try:
                with fs.open_input_stream(f"{inner}/{name}") as f:
                    cloudpickle.loads(f.readall())
                break
            except Exception:  # an empty or cut pickle raises EOFError, UnpicklingError, ValueError, ...
                unreadable.append(name)
        if not unreadable:
            continue
        if len(unreadable) == len(states):
            raise UserError(
                f"{path}/{unreadable[0]}: unreadable search state (empty or cut by a kill), and no older one to resume the "
                "search from; --overwrite to start over"
            )
        for name in unreadable:
            fs.move(f"{inner}/{name}", f"{inner}/{name}.unreadable")
        kept = states[len(states) - len(unreadable) - 1]
        lines.append(
            f"resume: {len(unreadable)} unreadable search-state file{'s' if len(unreadable) > 1 else ''} set aside "
            f"({', '.join(unreadable)}: cut by a kill); the search resumes from {kept}"
        )
    return lines


def _inside(study: str, fs_path: str) -> bool:
    return fs_path.rstrip("/").startswith(study.rstrip("/") + "/")


def repair_checkpoints(path: str, trials) -> list[str]:
    """A trial whose latest checkpoint (the one Tune restores) is gone or incomplete gets a copy of the
    newest complete checkpoint beside it, under the name Tune looks for. Tune deletes checkpoints beyond
    `num_to_keep` when it registers a new one and saves its state just after; a driver killed in between
    leaves a state naming a deleted checkpoint, and Tune refuses to restore the trial ("does not exist
    on storage anymore", seen in the bucket kill test). The copy may be newer than the deleted one,
    with epochs whose rows never reached result.json: it is marked with the epoch the state knows, and
    the restored trial reports the epochs after it again (checkpoint_notes)."""
    import pyarrow.fs

    from ..train.checkpoint import CHECKPOINT_FILE
    from .checkpoint_notes import write_restored_as
    from .forward import POINTER_FILE

    def complete(fs, folder: str) -> bool:  # a trial's own checkpoint, or a Ray Train trial's pointer
        return any(fs.get_file_info(f"{folder}/{f}").type == pyarrow.fs.FileType.File for f in (CHECKPOINT_FILE, POINTER_FILE))

    _, study = pyarrow.fs.FileSystem.from_uri(path)
    repaired = []
    for trial in trials:
        ckpt = trial.checkpoint
        if ckpt is None or complete(ckpt.filesystem, ckpt.path.rstrip("/")):
            continue
        fs, named = ckpt.filesystem, ckpt.path.rstrip("/")
        if not _inside(study, named):
            continue  # only checkpoints inside the study folder are ever written to
        parent, name = named.rsplit("/", 1)
        beside = [e.path for e in fs.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))]
        newest = max((p for p in beside if p.rsplit("/", 1)[-1].startswith("checkpoint_") and complete(fs, p)), default=None)
        if newest is None:
            continue  # nothing to restore from: Tune's own error names the checkpoint
        fs.create_dir(named)
        pyarrow.fs.copy_files(newest, named, source_filesystem=fs, destination_filesystem=fs)
        latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
        known = (latest.metrics if latest is not None else {}).get("epoch")
        if isinstance(known, int):  # the copy may be newer than the state: the trial reports the epochs between again
            write_restored_as(fs, named, known)
        repaired.append(f"trial {trial.trial_id}: its checkpoint {name} was deleted before the study's state was saved; "
                        f"it resumes from a copy of {newest.rsplit('/', 1)[-1]}")  # fmt: skip
    return repaired


def _rows_the_state_knows(trial) -> dict[int, dict]:
    """training_iteration -> the full result row, for every result Tune's saved state still holds: the
    kept checkpoints' results (Tune stores each with its metrics) and the trial's last result."""
    known = {}
    meta = trial.run_metadata
    for result in meta.checkpoint_manager.best_checkpoint_results:
        known[result.metrics.get("training_iteration")] = result.metrics
    if meta.last_result:
        known[meta.last_result.get("training_iteration")] = meta.last_result
    return {k: {key: v for key, v in row.items() if key != "experiment_tag"} for k, row in known.items() if isinstance(k, int)}


def _iteration(line: str) -> int:
    try:
        row = json.loads(line)
    except ValueError:
        return 0  # a row cut short by a kill
    value = row.get("training_iteration", 0) if isinstance(row, dict) else 0
    return value if isinstance(value, int) else 0


def recover_result_rows(path: str, trials) -> list[str]:
    """A trial's result.json gets back the rows its checkpoints were saved with but which never reached
    the file. Tune's driver uploads the experiment state and each trial's result.json one after the other;
    a kill between them can leave a state (and a checkpoint) at epoch k with result.json ending at k-1:
    the trial resumes after epoch k, and epoch k's metrics would be missing from every table. Only rows
    after the file's last one are appended (result.json only ever grows at its end); the file is
    replaced whole, through a temporary name (a bucket has no append)."""
    import pyarrow.fs
    from ray.air._internal.json import SafeFallbackEncoder  # the encoder Tune writes result.json with

    _, study = pyarrow.fs.FileSystem.from_uri(path)
    recovered = []
    for trial in trials:
        fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path.rstrip("/")
        if not _inside(study, folder):
            continue
        target = f"{folder}/{RESULT_FILE}"
        text = ""
        if fs.get_file_info(target).type == pyarrow.fs.FileType.File:
            with fs.open_input_stream(target) as f:
                text = f.readall().decode()
        last = max((_iteration(line) for line in text.splitlines()), default=0)
        missing = sorted(((k, row) for k, row in _rows_the_state_knows(trial).items() if k > last), key=lambda kv: kv[0])
        if not missing:
            continue
        if text and not text.endswith("\n"):
            text += "\n"  # a row cut short by the kill stays as it was; the analysis skips what does not parse
        text += "".join(json.dumps(row, cls=SafeFallbackEncoder) + "\n" for _, row in missing)
        partial = f"{target}.resume-tmp"
        with fs.open_output_stream(partial) as f:
            f.write(text.encode())
        fs.move(partial, target)
        epochs = ", ".join(str(row.get("epoch", k)) for k, row in missing)
        recovered.append(f"trial {trial.trial_id}: epoch {epochs} was checkpointed but missing from its {RESULT_FILE}; "
                         f"its row is restored from the study's state")  # fmt: skip
    return recovered
