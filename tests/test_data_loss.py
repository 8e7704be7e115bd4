"""Nothing lost: the --overwrite / --out / --name cases that deleted or escaped folders, run against
folders that hold a user's file, which must still be there byte for byte; and the replacements that
are allowed remove what the tool wrote and nothing else."""

import hashlib
import json

import pytest

from mhss_ray.cli import analyze_main, train_main, tune_main
from tests.test_bad_input_catalogue import space, tiny

PRECIOUS = b"three years of inspection notes\n"


def precious(folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "notes.txt"
    path.write_bytes(PRECIOUS)
    return path


def refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def still_there(path) -> bool:
    return path.is_file() and hashlib.sha1(path.read_bytes()).digest() == hashlib.sha1(PRECIOUS).digest()


def test_users_files_survive_every_data_loss_case(tmp_path, capsys, monkeypatch, demo_study):
    monkeypatch.chdir(tmp_path)
    storage, _, _, proc = demo_study
    assert proc.returncode == 0
    study = storage / "demo"
    config = tiny(tmp_path)

    # mhss-train --overwrite: a user's folder, the current folder, a folder above it
    user = precious(tmp_path / "user")
    refused(train_main, ["--config", config, "--out", str(tmp_path / "user"), "--overwrite"], capsys)
    here = precious(tmp_path)
    refused(train_main, ["--config", config, "--out", ".", "--overwrite"], capsys)
    monkeypatch.chdir(user.parent)
    refused(train_main, ["--config", config, "--out", str(tmp_path), "--overwrite"], capsys)
    monkeypatch.chdir(tmp_path)

    # mhss-analyze --out: the study itself, the storage above it, a user's folder
    in_study = precious(study)
    in_storage = precious(storage)
    study_files = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    refused(analyze_main, [str(study), "--out", str(study)], capsys)
    refused(analyze_main, [str(study), "--out", str(storage)], capsys)
    refused(analyze_main, [str(study), "--out", str(tmp_path / "user")], capsys)

    # mhss-tune: a name that climbs out of the storage; --overwrite of a study holding a user's file
    outside = precious(tmp_path / "victim")
    refused(tune_main, ["--space", space(tmp_path), "--storage", str(tmp_path / "st"), "--name", "../victim", "--overwrite"], capsys)
    refused(tune_main, ["--space", space(tmp_path), "--storage", str(storage), "--name", "demo", "--overwrite"], capsys)

    for path in (user, here, in_study, in_storage, outside):
        assert still_there(path), path
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == study_files  # the study is untouched
    in_study.unlink()  # leave the shared study as the other tests expect it
    in_storage.unlink()


def test_overwrite_replaces_only_what_the_tool_wrote(tmp_path, capsys, monkeypatch, demo_study):
    monkeypatch.chdir(tmp_path)
    # a real run, replaced by --overwrite: the run's files go, the marker proves whose they were
    out = tmp_path / "run"
    config = tiny(tmp_path, schedule__epochs=1)
    with pytest.raises(SystemExit) as first:
        train_main(["--config", config, "--out", str(out)])
    assert first.value.code == 0
    assert {p.name for p in out.iterdir()} >= {".mhss-run", "config.yaml", "metrics.jsonl", "checkpoint", "summary.json"}
    with pytest.raises(SystemExit) as again:
        train_main(["--config", config, "--out", str(out), "--overwrite", "--set", "seed=4"])
    assert again.value.code == 0
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 4

    # a second analysis into the same --out replaces the first; with a user's file there it is refused
    storage, _, _, _ = demo_study
    analysis = tmp_path / "analysis"
    for _ in range(2):
        with pytest.raises(SystemExit) as done:
            analyze_main([str(storage / "demo"), "--out", str(analysis)])
        assert done.value.code == 0
    assert (analysis / ".mhss-analysis").is_file() and (analysis / "trials.parquet").is_file()
    assert oct(analysis.stat().st_mode & 0o777) != oct(0o700)  # the user's umask, not mkdtemp's private mode
    note = precious(analysis)
    refused(analyze_main, [str(storage / "demo"), "--out", str(analysis)], capsys)
    assert still_there(note) and (analysis / "trials.parquet").is_file()
