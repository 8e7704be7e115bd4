"""The files in cluster/, validated offline: the launcher YAMLs against the schema and defaults of
the installed ray, the KubeRay manifest structurally (its entrypoint parsed by mhss-tune's own parser)."""

import copy
import json
import os
import re
import shlex

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from mhss_ray.cli import tune_parser
from mhss_ray.errors import UserError
from mhss_ray.tune.cluster import check_storage
from tests.conftest import REPO

LAUNCHERS = ["aws.yaml", "gcp.yaml", "onprem.yaml"]
with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
    SCHEMA = json.load(f)  # the schema `ray up` validates against, from the installed wheel


def load(name):
    return yaml.safe_load((REPO / "cluster" / name).read_text())


def check(config):
    """What `ray up` checks before it touches a cloud: the schema, then ray's defaults and validation."""
    jsonschema.validate(config, SCHEMA)
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_yaml_passes_rays_own_validation(name):
    config = load(name)
    check(config)
    text = (REPO / "cluster" / name).read_text()
    assert "ray[default,tune,train]==2.60.0" in text and "constraints.txt" in text  # pinned installs on every node
    assert re.search(r"<[a-z0-9-]+>", text), "placeholders for what the user fills in"
    if name != "onprem.yaml":
        types = config["available_node_types"]
        assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
        assert {t["resources"].get("GPU") for n, t in types.items() if n != config["head_node_type"]} == {1, 8}
        assert config["idle_timeout_minutes"] > 0 and all("max_workers" in t for n, t in types.items() if n != config["head_node_type"])
    else:
        assert (
            config["provider"]["type"] == "local" and {"head_ip", "worker_ips"} <= set(config["provider"]) and "ssh_user" in config["auth"]
        )


def unknown_key(config):
    config["max_worker"] = 3  # a typo of max_workers


def fractional_resource(config):
    if "available_node_types" not in config:  # the local provider derives its node types; declare one
        config["available_node_types"] = {"head": {"resources": {}, "node_config": {}}, "gpu": {"resources": {}, "node_config": {}}}
        config["head_node_type"] = "head"
    worker = next(n for n in config["available_node_types"] if n != config["head_node_type"])
    config["available_node_types"][worker]["resources"]["GPU"] = 0.5  # node resources are whole units


@pytest.mark.parametrize("name", LAUNCHERS)
@pytest.mark.parametrize(
    "break_it, expected",
    [
        (unknown_key, "Additional properties are not allowed ('max_worker' was unexpected)"),
        (fractional_resource, "0.5 is not of type 'integer'"),
    ],
    ids=["unknown-key", "fractional-resource"],
)
def test_a_broken_copy_fails(name, break_it, expected):
    config = load(name)
    break_it(config)
    with pytest.raises(jsonschema.ValidationError) as exc:
        check(config)
    assert exc.value.message == expected


def test_kuberay_rayjob_is_well_formed_and_runs_mhss_tune():
    docs = [d for d in yaml.safe_load_all((REPO / "cluster" / "kuberay-rayjob.yaml").read_text()) if d]
    (job,) = docs
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = cluster["workerGroupSpecs"]
    assert workers and all({"groupName", "minReplicas", "maxReplicas", "template", "rayStartParams"} <= set(w) for w in workers)
    images = {head["image"]} | {w["template"]["spec"]["containers"][0]["image"] for w in workers}
    assert len(images) == 1 and images.pop().endswith("ray2.60.0")
    assert "FROM rayproject/ray:2.60.0-" in (REPO / "cluster" / "Dockerfile").read_text()
    gpu = workers[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert int(gpu) >= 1
    for w in workers:  # DataLoader workers need more shared memory than a pod's 64 MB default
        pod = w["template"]["spec"]
        shm = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert shm and mounts.get(shm[0]["name"]) == "/dev/shm", w["groupName"]

    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "mhss-tune"
    args = tune_parser().parse_args(argv[1:])  # exits (and fails the test) on anything mhss-tune would reject
    assert (REPO / args.space).is_file()
    assert args.address == "auto"
    assert spec["backoffLimit"] >= 1 and args.resume_or_start  # a rerun continues the study instead of being refused
    check_storage(args.storage, args.address, args.shared_storage)  # a bucket: accepted with a remote address


@pytest.mark.parametrize("storage", ["s3://bucket/studies", "gs://bucket/studies"])
def test_storage_check_accepts_buckets_with_a_remote_address(storage):
    check_storage(storage, "auto", shared=False)


def test_storage_check_accepts_a_declared_shared_folder_and_a_local_cluster():
    check_storage("/mnt/nfs/studies", "10.0.0.5:6379", shared=True)
    check_storage("runs/studies", None, shared=False)


def test_storage_check_refuses_a_local_folder_with_a_remote_address():
    with pytest.raises(
        UserError, match=r"tune.storage_path: runs/studies is local, the other nodes of --address auto cannot write it; .* --shared-storage"
    ):
        check_storage("runs/studies", "auto", shared=False)


def test_mhss_tune_refuses_it_before_connecting(cli_env, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from mhss_ray.cli import tune_main; tune_main()", "--space", str(REPO / "search_spaces" / "demo.yaml")]
    proc = subprocess.run(
        cmd + ["--address", "127.0.0.1:1", "--storage", str(tmp_path / "studies")], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--shared-storage" in proc.stderr, proc.stderr
    assert not (tmp_path / "studies").exists()


def test_gcp_gpu_nodes_install_the_driver_and_docker_leaves_the_venv_out():
    nodes = yaml.safe_load((REPO / "cluster" / "gcp.yaml").read_text())["available_node_types"]
    for name, node in nodes.items():
        items = {i["key"]: i["value"] for i in node["node_config"].get("metadata", {}).get("items", [])}
        assert (items.get("install-nvidia-driver") == "True") == bool(node["resources"].get("GPU")), name
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)


@pytest.mark.parametrize(
    "name, staging",
    [("aws", "aws s3 sync --only-show-errors s3://<data-bucket>/treesat /data/treesat"),
     ("gcp", "gcloud storage rsync --recursive gs://<data-bucket>/treesat /data/treesat"),
     ("onprem", "test -d <datasets-mount>/treesat")],
)  # fmt: skip
def test_every_node_stages_the_data_where_the_readme_points_data_root(name, staging):
    cfg = yaml.safe_load((REPO / "cluster" / f"{name}.yaml").read_text())
    at = [i for i, command in enumerate(cfg["setup_commands"]) if command.startswith(staging)]
    assert at and at[0] > 1, cfg["setup_commands"]  # in the setup commands (the head and every worker run them), after the install
    readme = (REPO / "cluster" / "README.md").read_text()
    root = staging.split()[-1] if name != "onprem" else "<datasets-mount>/treesat"
    assert f"data.root={root}" in readme, root
