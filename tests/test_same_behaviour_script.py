"""benchmarks/same_behaviour.py writes only into folders it made: a user's folder given as --out is refused
before anything runs, and left as it was."""

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = str(REPO / "benchmarks" / "same_behaviour.py")


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_users_folder_as_out_is_refused_untouched(tmp_path):
    user = tmp_path / "mine"
    (user / "asl").mkdir(parents=True)
    (user / "asl" / "notes.txt").write_text("my notes")
    (user / "analysis").mkdir()
    (user / "analysis" / "table.csv").write_text("a,b\n1,2\n")
    before = files(user)

    run = subprocess.run([sys.executable, SCRIPT, "run", "--out", str(user)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "was not written by same_behaviour.py" in run.stderr, run.stderr
    analyze = subprocess.run(
        [sys.executable, SCRIPT, "analyze", "--study", str(tmp_path / "study"), "--out", str(user / "analysis")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert analyze.returncode != 0 and "exists; the analysis goes to a new folder" in analyze.stderr, analyze.stderr
    assert files(user) == before and sorted(p.name for p in user.iterdir()) == ["analysis", "asl"]
