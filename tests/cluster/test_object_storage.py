"""A study in a bucket, for real: a local S3-compatible server (moto's, over HTTP), the endpoint given
the way pyarrow and Ray read it (AWS_ENDPOINT_URL) and the credentials only in the environment. The
driver is SIGKILLed mid-study, `--resume` continues from the bucket, and `mhss-analyze` and
`mhss-predict` read the study from there."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mhss_ray.tune.study import free_port
from tests.conftest import REPO
from tests.studies import kill_when, killed_space

pytestmark = pytest.mark.slow
BUCKET = "mhss-studies"
CLI = {name: [sys.executable, "-c", f"from mhss_ray.cli import {name}_main; {name}_main()"] for name in ("tune", "analyze", "predict")}


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free port, a bucket in it, and the environment a user would export."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        RAY_AUTH_MODE="disabled",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, **keys)
    deadline = time.time() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.time() > deadline:
                server.kill()
                raise
            time.sleep(0.5)
    yield env, client
    server.terminate()
    server.wait(30)


def keys_of(client) -> list[str]:
    return [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]


def bucket_results(client, prefix: str) -> dict[str, list[int]]:
    """trial id -> the epochs of its result.json in the bucket."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/result.json"):
                body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
                rows = [json.loads(line) for line in body.splitlines() if line.strip()]
                if rows:
                    out[rows[0]["trial_id"]] = [r["epoch"] for r in rows]
    return out


def test_a_study_in_a_bucket_resumes_after_a_kill_and_is_analysed_and_applied(s3_server, tmp_path):
    env, client = s3_server
    storage = f"s3://{BUCKET}/studies"
    space = str(killed_space(tmp_path, workers=0, trials=2))
    cmd = [*CLI["tune"], "--space", space, "--storage", storage, "--set", "schedule.epochs=4"]  # 4 of the kill tests' 6 epochs
    killed = kill_when(cmd, env, lambda: any(len(e) >= 2 for e in bucket_results(client, "studies/resume/").values()), settle=1.0)
    assert killed, "the study ended before it could be killed"
    before = bucket_results(client, "studies/resume/")
    assert before and max(map(len, before.values())) < 4  # killed mid-study, its epochs in the bucket

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = bucket_results(client, "studies/resume/")
    assert sorted(after) == sorted(before)  # the same trials, continued
    errors = [client.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode()[-1500:] for k in keys_of(client) if k.endswith("error.txt")]
    for trial_id, epochs in after.items():
        # every trial ran to the end from its checkpoint in the bucket, every epoch recorded, the killed study's
        # rows kept as they were. A kill between Tune uploading its state and a result.json leaves the file one
        # epoch behind the checkpoint; --resume restores that row from the state (resume_repair.recover_result_rows).
        # An epoch re-run after the kill may appear twice (the analysis keeps its last row).
        assert sorted(set(epochs)) == [1, 2, 3, 4] and epochs[: len(before[trial_id])] == before[trial_id], (
            trial_id, epochs, errors, resumed.stdout[-2000:],
        )  # fmt: skip
    keys = keys_of(client)
    assert any("/checkpoint_" in k for k in keys) and not list(tmp_path.glob("**/checkpoint_*"))  # checkpoints in the bucket only

    out = tmp_path / "analysis"
    analysed = subprocess.run(
        [*CLI["analyze"], f"{storage}/resume", "--out", str(out)], env=env, capture_output=True, text=True, timeout=900
    )
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    assert sorted(trials["trial_id"]) == sorted(after) and set(trials["outcome"]) == {"completed"}
    assert all(str(c).startswith(f"{storage}/resume/trial_") for c in trials["best_checkpoint"])  # URIs: mhss-audit/-predict read them
    assert len(pq.read_table(out / "epochs.parquet")) == 2 * 4  # every epoch of both trials

    predictions = tmp_path / "test.csv"
    predicted = subprocess.run(
        [*CLI["predict"], "--from", f"{storage}/resume", "--images", "test", "--out", str(predictions)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(predictions.read_text().splitlines()) == 1 + 48  # a header and the run's test split (TINY_SPACE: 48 images)
