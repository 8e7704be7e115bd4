"""OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE) in every process that imports mhss_ray before
torch, unless the user set a policy (benchmarks/README.md, "Threads on a busy machine")."""

import os
import subprocess
import sys

from tests.conftest import REPO

# what OpenMP itself made of it when torch loaded it: libgomp prints its settings with OMP_DISPLAY_ENV=verbose, and
# its spin count says how long a waiting thread spins (300000 by default, 0 when passive)
PROBE = "import mhss_ray, torch; torch.set_num_threads(2); torch.ones(64, 64) @ torch.ones(64, 64)"


def omp_settings(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base.update(PYTHONPATH=str(REPO), OMP_DISPLAY_ENV="verbose", **env)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=base, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_openmp_threads_wait_passively_unless_the_user_set_a_policy():
    assert "GOMP_SPINCOUNT = '0'" in omp_settings()
    active = omp_settings(OMP_WAIT_POLICY="ACTIVE")
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in active and "GOMP_SPINCOUNT = '0'" not in active
