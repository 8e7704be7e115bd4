"""Training speed when the machine is busy: does a thread setting collapse when other processes take a core?

    python benchmarks/threads_under_load.py                 # base.yaml, 2 rounds (about 15 min on 2 cores)
    python benchmarks/threads_under_load.py --rounds 1 --set data.n_train=1000

A user's laptop is rarely idle. Each setting below runs the real `mhss-train` (base.yaml: resnet18 at 32 px,
ASL) for `--epochs` epochs, on the machine as it is ("quiet"), beside `--load` busy processes at the lowest
priority (nice 19), and beside as many at the same priority ("equal load": what the applications of a
desktop session amount to, each in its own control group, where a nice value weighs nothing). Settings and conditions are
interleaved round by round, so a drift of the machine touches each alike. Reported: the median training
images/s over the epochs after the first, per setting and condition, and its ratio to the best setting
in that condition.

Settings (all else the run config's):
- `cores, spin wait`: `runtime.threads: null` (torch: one thread per core) with OpenMP's own wait policy
  (its threads spin before they sleep): mhss-train before this benchmark. The process imports torch before
  mhss_ray, so OpenMP starts before mhss_ray can set its policy;
- `cores, passive wait`: `runtime.threads: null` with `OMP_WAIT_POLICY=PASSIVE` (a waiting thread sleeps at
  once), which mhss_ray sets when it is imported before torch, unless the environment sets a policy:
  mhss-train as it runs now;
- `cores - 1, spin wait` and `1 thread, spin wait`: `runtime.threads` one fewer than the cores, and 1.

Prints a table and writes results/threads_under_load.json. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import relative, write_result  # noqa: E402

SPIN = "import os, sys; os.nice(int(sys.argv[1]))\nwhile True: pass"


# (condition, the busy processes' nice value; None: no load). Nice 19 only weighs against processes of the same
# control group: the applications of a desktop session, each in its own group, share the cores alike whatever
# their nice value, which the second load stands for
CONDITIONS = (("quiet", None), ("nice 19 load", 19), ("equal load", 0))

SPIN_WAIT = "import torch; "  # OpenMP reads its wait policy when torch loads it: before mhss_ray can set one


def settings(cores: int) -> list[tuple[str, str, list[str]]]:
    """(name, code run before mhss-train, --set overrides)."""
    return [
        ("cores, spin wait", SPIN_WAIT, []),
        ("cores, passive wait", "", []),
        ("cores - 1, spin wait", SPIN_WAIT, [f"runtime.threads={max(1, cores - 1)}"]),
        ("1 thread, spin wait", SPIN_WAIT, ["runtime.threads=1"]),
    ]


def train_speed(config: str, overrides: list[str], prelude: str, epochs: int) -> float:
    """Median training images/s of the epochs after the first."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="threads-bench-") as out:
        sets = [f"schedule.epochs={epochs}", "runtime.device=cpu", *overrides]
        code = prelude + "import sys; from mhss_ray.cli import train_main; sys.exit(train_main())"
        cmd = [sys.executable, "-c", code, "--config", config]
        cmd += [a for s in sets for a in ("--set", s)] + ["--out", out]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"mhss-train failed ({' '.join(sets)}):\n{proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines() if line.strip()]
    return statistics.median(r["images_per_s"] for r in rows if r.get("epoch", 0) > 1)


def threads_of(sets: list[str], cores: int) -> int:
    given = [int(s.split("=", 1)[1]) for s in sets if s.startswith("runtime.threads=")]
    return given[-1] if given else cores  # torch's default: one per core


def start_load(n: int, nice: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN, str(nice)]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "benchmarks" / "base.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=["data.n_train=2000"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", type=int, default=2, help="busy processes at nice 19 in the loaded condition")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "threads_under_load.json"))
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    runs: dict[tuple[str, str], list[float]] = {}
    threads: dict[str, int] = {}
    for r in range(args.rounds):
        for condition, nice in CONDITIONS:
            for name, prelude, sets in settings(cores):
                load = start_load(args.load, nice) if nice is not None else []
                try:
                    time.sleep(1.0 if load else 0.0)  # let the load take its cores
                    speed = train_speed(args.config, args.overrides + sets, prelude, args.epochs)
                finally:
                    stop_load(load)
                runs.setdefault((name, condition), []).append(speed)
                threads[name] = threads_of(args.overrides + sets, cores)
                print(f"round {r + 1} {condition:>12}  {name:<22} {speed:7.1f} images/s  ({threads[name]} threads)", flush=True)

    rows = []
    for name, _, _ in settings(cores):
        row = {"setting": name, "threads": threads[name]}
        for condition, _ in CONDITIONS:
            row[condition] = statistics.median(runs[(name, condition)])
            row[f"{condition} runs"] = runs[(name, condition)]
        rows.append(row)
    for condition, _ in CONDITIONS:
        best = max(r[condition] for r in rows)
        for row in rows:
            row[f"{condition} vs best"] = row[condition] / best
    result = {
        "config": relative(args.config),
        "overrides": args.overrides,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "load_processes": args.load,
        "conditions": {c: n for c, n in CONDITIONS},
        "cores": cores,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    names = [c for c, _ in CONDITIONS]
    print(f"\n{cores} cores, {args.load} busy processes when loaded; median of {args.rounds} runs, training images/s (and / the best)")
    print(f"{'setting':<22} | {'threads':>7} | " + " | ".join(f"{c:>20}" for c in names))
    for r in rows:
        cells = " | ".join(f"{r[c]:>11.1f} ({r[c + ' vs best']:.2f})" + " " * 2 for c in names)
        print(f"{r['setting']:<22} | {r['threads']:>7} | {cells}")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
