"""The hostile cases (docs/bad-input.md, second table): data loss, paths that escape their folder,
corrupt state, resource bombs, input accepted silently but wrong, settings that make a run
meaningless. Each through the command a user types: exit 2, one line under 300 characters, no
traceback, and every file under the test folder byte for byte as before (nothing written, changed
or deleted).
"""

import hashlib
import json
import os

import pytest
import torch
import yaml

from mhss_ray.cli import analyze_main, train_main, tune_main
from mhss_ray.data import fixtures
from tests.conftest import TINY
from tests.test_bad_input_catalogue import space, tiny, write

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7)
)  # 9^8 = 43 million values in under 300 bytes


def snapshot(root) -> dict:
    """Every path under root: folders as None, files as (size, sha1) of their bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_dir():
            out[str(p)] = None
        else:
            out[str(p)] = (p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def folder(path, *files: str):
    """A folder holding a user's files (their content is their name)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text(f"the user's {name}\n")
    return path


def fake_study(path, info: dict | str | None = None, state: str | None = None, extra: tuple[str, ...] = ()):
    """A study folder as Tune leaves it, as far as the checks read it (tuner.pkl, the state file)."""
    folder(path, *extra)
    (path / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (path / "experiment_state-2026-01-01_00-00-00.json").write_text(
        state if state is not None else json.dumps({"trial_data": [], "runner_data": {}})
    )
    if info is not None:
        (path / "mhss_study.json").write_text(info if isinstance(info, str) else json.dumps(info))
    return path


def linked_study(t):
    """A study whose train-x entry is a link to a user's folder (a recursive delete would follow it)."""
    study = fake_study(t / "st" / "x", {"name": "x"})
    (study / "train-x").symlink_to(folder(t / "mine", "thesis.tex"))
    return study


def run_folder(path, *extra: str):
    """An mhss-train run folder (marker, config) plus the user's files `extra`."""
    folder(path, *extra)
    (path / ".mhss-run").write_text('{"written_by": "mhss-train", "format": 1}\n')
    (path / "config.yaml").write_text(yaml.safe_dump(TINY))
    return path


def overwrite_study(t, info, user_file: str) -> list[str]:
    """mhss-tune --overwrite of a study folder `x` holding `info` as its mhss_study.json (None: none) and a user's file."""
    study = fake_study(t / "st" / "x", info, extra=(user_file,))
    return ["--space", space(t), "--storage", str(t / "st"), "--name", study.name, "--overwrite"]


def manifest(t):
    fixtures.write_manifest(t / "data", n=24, size=16)
    return t / "data"


def manifest_row(t, new_name: str):
    """The manifest fixture with row 7's image named `new_name` (the file it named still there)."""
    root = manifest(t)
    table = (root / "manifest.csv").read_text().replace("images/img_005.png", new_name)
    (root / "manifest.csv").write_text(table)
    return ["--config", tiny(t, data__name="manifest", data__root=str(root))]


def linked_outside(t, folder_link: bool):
    """A link inside the data root to images outside it: a linked folder, or one linked file."""
    fixtures.write_manifest(t / "elsewhere", n=8, size=16, seed=1)
    root = manifest(t)
    if folder_link:
        (root / "shared").symlink_to(t / "elsewhere" / "images")
        return manifest_row(t, "shared/img_005.png")
    (root / "images" / "img_005.png").unlink()
    (root / "images" / "img_005.png").symlink_to(t / "elsewhere" / "images" / "img_005.png")
    return ["--config", tiny(t, data__name="manifest", data__root=str(root))]


def treesat(t, edit=None):
    shares, train, test = fixtures.write_treesat(t / "ts", n_train=12, n_test=4, size=16)
    if edit:
        edit(t / "ts", shares, train, test)
    return ["--config", tiny(t, data__name="treesat", data__root=str(t / "ts"))]


def treesat_labels(shares_edit):
    def edit(root, shares, train, test):
        shares_edit(shares, train)
        (root / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(shares))

    return edit


def nested(t):
    os.chdir(folder(t / "work" / "inside"))
    return ["--config", tiny(t), "--out", str(t / "work"), "--overwrite"]


def foreign_checkpoint(t):
    out = run_folder(t / "run")
    (out / "checkpoint").mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, out / "checkpoint" / "checkpoint.pt")
    return ["--resume", "--out", str(out)]


# (id, command, arguments built from the test folder, text the one line must contain)
CASES = [
    # -- data loss: a tool deletes only what it can prove it wrote, never what it reads
    (
        "train-overwrite-user-folder",
        train_main,
        lambda t: ["--config", tiny(t), "--out", str(folder(t / "mine", "thesis.tex")), "--overwrite"],
        "did not write (no .mhss-run marker)",
    ),
    (
        "train-overwrite-current-folder",
        train_main,
        lambda t: ["--config", tiny(t), "--out", ".", "--overwrite"],
        "is the current folder or holds it",
    ),
    ("train-overwrite-parent-of-current", train_main, nested, "is the current folder or holds it"),
    (
        "train-overwrite-data-root",
        train_main,
        lambda t: ["--config", tiny(t, data__name="manifest", data__root=str(manifest(t))), "--out", str(t / "data"), "--overwrite"],
        "is the data.root that mhss-train reads",
    ),
    (
        "train-manifest-path-outside-root",
        train_main,
        lambda t: (fixtures.write_manifest(t / "elsewhere", n=8, size=16), manifest_row(t, "../elsewhere/images/img_005.png"))[1],
        "image ../elsewhere/images/img_005.png is outside the dataset folder",  # it exists: refused for where it is
    ),
    (
        "train-manifest-absolute-path",
        train_main,
        lambda t: manifest_row(t, str(t / "data" / "images" / "img_005.png")),  # inside the root, but not as the rows are matched
        ": write it as images/img_005.png (paths are matched as written",
    ),
    (
        "train-link-to-a-folder-outside-root",
        train_main,
        lambda t: linked_outside(t, folder_link=True),
        "image shared/img_005.png is read through the link shared outside the dataset folder (set data.follow_links: true",
    ),
    (
        "train-link-to-a-file-outside-root",
        train_main,
        lambda t: linked_outside(t, folder_link=False),
        "image images/img_005.png is a link outside the dataset folder (set data.follow_links: true",
    ),
    (
        "train-cache-inside-data-root",
        train_main,
        lambda t: ["--config", tiny(t, data__name="manifest", data__root=str(manifest(t)), data__cache_dir=str(t / "data" / "cache"))],
        "is inside the dataset folder",
    ),
    (
        "train-cache-dir-is-a-file",
        train_main,
        lambda t: ["--config", tiny(t, data__name="manifest", data__root=str(manifest(t)), data__cache_dir=write(t / "c.txt", "x"))],
        "data.cache_dir: ",
    ),
    (
        "tune-cache-inside-data-root",
        tune_main,
        lambda t: [
            "--space",
            space(
                t,
                data__name="manifest",
                data__root=str(manifest(t)),
                data__cache_dir=str(t / "data" / "c"),
                tune__search_alg__points_to_evaluate=None,
            ),
            "--storage",
            str(t / "st"),
        ],
        "is inside the dataset folder",
    ),
    (
        "train-overwrite-holds-config",
        train_main,
        lambda t: ["--config", write(folder(t / "cfgs") / "run.yaml", TINY), "--out", str(t / "cfgs"), "--overwrite"],
        "holds the config file",
    ),
    (
        "train-overwrite-run-with-user-file",
        train_main,
        lambda t: ["--config", tiny(t), "--out", str(run_folder(t / "run", "notes.txt")), "--overwrite"],
        "holds 'notes.txt', which mhss-train did not write",
    ),
    (
        "train-out-not-a-run",
        train_main,
        lambda t: ["--config", tiny(t), "--out", str(folder(t / "mine", "a.csv"))],
        "holds files that are not an mhss-train run",
    ),
    (
        "analyze-out-is-the-study",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", str(t / "s" / "demo")],
        "is the study folder that mhss-analyze reads",
    ),
    (
        "analyze-out-holds-the-study",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", str(t / "s")],
        "holds the study folder",
    ),
    (
        "analyze-out-inside-the-study",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", str(t / "s" / "demo" / "analysis")],
        "lies inside the study folder",
    ),
    (
        "analyze-out-user-folder",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", str(folder(t / "mine", "data.csv"))],
        "did not write (no .mhss-analysis marker)",
    ),
    (
        "analyze-out-current-folder",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", "."],
        "is the current folder or holds it",
    ),
    (
        "tune-overwrite-foreign-experiment",
        tune_main,
        lambda t: overwrite_study(t, None, "data.csv"),
        "did not write (no mhss_study.json)",
    ),
    (
        "tune-overwrite-study-with-user-file",
        tune_main,
        lambda t: overwrite_study(t, {"name": "x"}, "notes.txt"),
        "holds 'notes.txt', which mhss-tune did not write",
    ),
    (
        "tune-overwrite-study-with-a-user-trial-file",
        tune_main,
        lambda t: overwrite_study(t, {"name": "x"}, "trial_notes.txt"),
        "holds 'trial_notes.txt', which mhss-tune did not write",
    ),
    (
        "tune-overwrite-study-with-a-link",
        tune_main,
        lambda t: ["--space", space(t), "--storage", str(t / "st"), "--name", linked_study(t).name, "--overwrite"],
        "'train-x' is a link, which mhss-tune never writes",
    ),
    # -- names are single path components; paths read from files are checked
    (
        "tune-name-escapes",
        tune_main,
        lambda t: ["--space", space(t), "--storage", str(t / "st"), "--name", "../../x"],
        "--name: expected a plain folder name",
    ),
    ("tune-name-dot-dot", tune_main, lambda t: ["--space", space(t), "--name", ".."], "--name: expected a plain folder name"),
    ("tune-yaml-name-with-slash", tune_main, lambda t: ["--space", space(t, tune__name="a/b")], "tune.name: expected a plain folder name"),
    (
        "analyze-info-name-escapes",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {"name": "../../victim"})), "--out", str(t / "an")],
        "is not a plain folder name",
    ),
    (
        "analyze-info-corrupt",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", '{"name": "de')), "--out", str(t / "an")],
        "mhss_study.json: corrupt",
    ),
    # -- corrupt state is reported, never replaced by a fresh start
    (
        "tune-resume-truncated-state",
        tune_main,
        lambda t: [
            "--space",
            space(t),
            "--storage",
            str(t / "st"),
            "--name",
            fake_study(t / "st" / "x", {"name": "x"}, state='{"trial_data": [[').name,
            "--resume",
        ],
        "corrupt experiment state",
    ),
    (
        "analyze-truncated-state",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {"name": "demo"}, state='{"trial_da')), "--out", str(t / "an")],
        "experiment_state file is corrupt",
    ),
    # -- resource exhaustion and hostile files
    (
        "train-yaml-alias-bomb",
        train_main,
        lambda t: ["--config", write(t / "bomb.yaml", ALIAS_BOMB)],
        "expands to more than 100,000 values",
    ),
    ("tune-yaml-alias-bomb", tune_main, lambda t: ["--space", write(t / "bomb.yaml", ALIAS_BOMB)], "expands to more than 100,000 values"),
    (
        "train-set-alias-bomb",
        train_main,
        lambda t: ["--config", tiny(t), "--set", "data.bands=" + ALIAS_BOMB.replace("\n", ", ").join("{}")],
        "--set data.bands: expands to more than",
    ),
    ("train-huge-value-capped", train_main, lambda t: ["--config", tiny(t, model__name="x" * 20000)], "model.name: unknown timm model"),
    (
        "train-out-is-a-file",
        train_main,
        lambda t: ["--config", tiny(t), "--out", write(t / "out.txt", "mine")],
        "exists and is not a folder",
    ),
    (
        "train-out-under-a-file",
        train_main,
        lambda t: ["--config", tiny(t), "--out", str(t / "out.txt" / "run") if write(t / "out.txt", "mine") else ""],
        "is a file, not a folder",
    ),
    ("train-out-unwritable", train_main, lambda t: ["--config", tiny(t), "--out", "/proc/mhss-run"], "--out /proc/mhss-run: cannot write"),
    ("tune-storage-is-a-file", tune_main, lambda t: ["--space", space(t), "--storage", write(t / "st.txt", "mine")], "--storage: "),
    (
        "analyze-out-is-a-file",
        analyze_main,
        lambda t: [str(fake_study(t / "s" / "demo", {})), "--out", write(t / "an.txt", "mine")],
        "exists and is not a folder",
    ),
    ("train-resume-foreign-checkpoint", train_main, foreign_checkpoint, "not a checkpoint of an mhss-ray run"),
    # -- accepted silently, but wrong
    (
        "train-duplicate-yaml-key",
        train_main,
        lambda t: ["--config", write(t / "dup.yaml", "method:\n  name: asl\nseed: 1\nmethod:\n  name: coteaching\n")],
        "duplicate key 'method' (first at line 1",
    ),
    (
        "tune-duplicate-yaml-key",
        tune_main,
        lambda t: [
            "--space",
            write(
                t / "dup.yaml",
                "search:\n  method.alpha: {dist: uniform, low: 0, high: 1}\n  method.alpha: {dist: uniform, low: 1, high: 2}\n",
            ),
        ],
        "duplicate key 'method.alpha'",
    ),
    (
        "treesat-image-in-train-and-test",
        train_main,
        lambda t: treesat(t, lambda r, s, tr, te: (r / "test_filenames.lst").write_text("\n".join(te + tr[:1]) + "\n")),
        "is in both the train and the test split",
    ),
    (
        "treesat-image-listed-twice",
        train_main,
        lambda t: treesat(t, lambda r, s, tr, te: (r / "train_filenames.lst").write_text("\n".join(tr + tr[2:3]) + "\n")),
        "line 13: image",
    ),
    (
        "treesat-area-share-nan",
        train_main,
        lambda t: treesat(t, treesat_labels(lambda s, tr: s[tr[0]][0].__setitem__(1, float("nan")))),
        "area share nan, expected a number in [0, 1]",
    ),
    (
        "treesat-area-share-above-1",
        train_main,
        lambda t: treesat(t, treesat_labels(lambda s, tr: s[tr[0]][0].__setitem__(1, 1.5))),
        "area share 1.5, expected a number in [0, 1]",
    ),
    (
        "manifest-same-file-twice",
        train_main,
        lambda t: ["--config", tiny(t, data__name="manifest", data__root=str(duplicated_manifest(t)))],
        "is listed again (first at line 2)",
    ),
    (
        "train-val-fraction-zero",
        train_main,
        lambda t: ["--config", tiny(t, data__val_fraction=0)],
        "data.val_fraction: expected a number in (0, 0.9], got 0",
    ),
    # -- settings that make a run or a study meaningless: refused before Ray starts, --dry-run too
    (
        "train-forget-rate-reaches-1",
        train_main,
        lambda t: [
            "--config",
            tiny(t, method__name="coteaching", method__noise_rate_source="given", method__noise_rate=0.6, method__alpha=2),
        ],
        "a forget rate of 1 or more",
    ),
    (
        "train-warmup-reaches-epochs",
        train_main,
        lambda t: ["--config", tiny(t, method__name="mhss", method__warmup=3)],
        "method.warmup: 3 warm-up epochs with schedule.epochs 3",
    ),
    (
        "train-short-run-of-a-best-config",
        train_main,
        lambda t: ["--config", tiny(t, method__name="mhss", method__warmup=4, method__q=3), "--set", "schedule.epochs=2"],
        "method.warmup: 4 warm-up epochs with schedule.epochs 2: mhss would never start (keep it below the epochs; for a short "
        "try, set method.warmup=1 method.q=1)",
    ),
    (
        "tune-warmup-range-reaches-epochs",
        tune_main,
        lambda t: ["--space", space(t, {"method.warmup": {"dist": "randint", "low": 3, "high": 10}}), "--dry-run"],
        "method.warmup: 9 warm-up epochs with schedule.epochs 9",
    ),
    (
        "tune-grace-beyond-max-t",
        tune_main,
        lambda t: ["--space", space(t, tune__scheduler={"name": "asha", "grace_period": 12}), "--dry-run"],
        "grace_period: 12 is beyond max_t 9",
    ),
    (
        "tune-first-rung-inside-warmup",
        tune_main,
        lambda t: ["--space", space(t, tune__scheduler={"name": "asha", "grace_period": 5}), "--dry-run"],
        "ASHA's first rung, epoch 5, compares trials still in their warm-up (mhss trains every entry alike until epoch 5): set it to 6",
    ),
    (
        "tune-no-rung-after-warmup",
        tune_main,
        lambda t: ["--space", space(t, tune__scheduler={"name": "asha", "grace_period": 3, "max_t": 5}), "--dry-run"],
        "and no rung fits after it within 5 epochs",
    ),
    (
        "tune-point-outside-dimension",
        tune_main,
        lambda t: ["--space", space(t, tune__search_alg={"name": "hyperopt", "points_to_evaluate": [{"method.alpha": 3.0}]}), "--dry-run"],
        "method.alpha: 3.0 lies outside its search dimension",
    ),
    (
        "tune-point-missing-a-key",
        tune_main,
        lambda t: ["--space", space(t, tune__search_alg={"name": "hyperopt", "points_to_evaluate": [{"method.alpha": 1.0}]}), "--dry-run"],
        "no value for method.noise_rates; HyperOpt needs every search key",
    ),
    (
        "tune-uniform-on-integer-key",
        tune_main,
        lambda t: ["--space", space(t, {"method.q": {"dist": "uniform", "low": 2, "high": 6}}), "--dry-run"],
        "method.q takes whole numbers",
    ),
    (
        "tune-quniform-overshoots",
        tune_main,
        lambda t: ["--space", space(t, {"method.theta": {"dist": "quniform", "low": 0, "high": 0.95, "q": 0.1}}), "--dry-run"],
        "0.95 is not a multiple of q 0.1",
    ),
    (
        "tune-forget-rate-extremes",
        tune_main,
        lambda t: ["--space", space(t, {"method.noise_rates": {"per_class": True, "dist": "uniform", "low": 0, "high": 0.6}}), "--dry-run"],
        "a forget rate of 1 or more",
    ),
    (
        "train-pct-start-1",
        train_main,
        lambda t: ["--config", tiny(t, optim__pct_start=1)],
        "optim.pct_start: expected a number in (0, 1), got 1",
    ),
    (
        "train-vit-image-size",
        train_main,
        lambda t: ["--config", tiny(t, model__name="vit_tiny_patch16_224")],
        "do not fit model.name vit_tiny_patch16_224 (it takes 224 px",
    ),
    (
        "train-set-blames-the-flag",
        train_main,
        lambda t: ["--config", tiny(t), "--set", "optim.lr=fast"],
        "--set optim.lr=fast: optim.lr: expected a number",
    ),
]


def duplicated_manifest(t):
    root = manifest(t)
    lines = (root / "manifest.csv").read_text().splitlines()
    (root / "manifest.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    return root


@pytest.mark.parametrize("name, main, args, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_short_line_and_nothing_changes(name, main, args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders (runs/...) would land here
    argv = args(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert len(lines[0]) < 300, lines[0]
    assert expected in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "a refused command must leave every file as it was"


def test_hostile_catalogue_is_documented():
    from tests.conftest import REPO

    doc = (REPO / "docs" / "bad-input.md").read_text()
    for case in CASES:
        assert f"`{case[0]}`" in doc, f"{case[0]} missing from docs/bad-input.md"
    assert len(CASES) >= 40
