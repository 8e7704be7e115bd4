"""Before the first trial on a cluster: every node that can run a trial holds the dataset folder and the
pretrained weights at the paths the config names (a trial would otherwise fail there, epoch after
epoch of retries). One tiny Ray task per node, pinned to it; a node the autoscaler starts later is not
there yet to be asked (its setup commands stage the data: cluster/README.md)."""

from __future__ import annotations

from ..errors import UserError
from .space import StudySpec

CHECK_TIMEOUT_S = 120


def _paths(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(config key, absolute path, "folder" or "file") a trial opens on its node."""
    out = []
    if spec.base.get("data", {}).get("root"):
        out.append(("data.root", spec.base["data"]["root"], "folder"))
    if spec.base.get("model", {}).get("pretrained_path"):
        out.append(("model.pretrained_path", spec.base["model"]["pretrained_path"], "file"))
    return out


def trial_nodes(spec: StudySpec) -> list[dict]:
    """The alive nodes with room for one trial's worker (its CPUs, and its GPU share where it asks for one)."""
    import ray

    r = spec.tune.resources
    need_gpu = r.gpu_per_worker > 0
    return [
        n
        for n in ray.nodes()
        if n.get("Alive")
        and n["Resources"].get("CPU", 0) >= r.cpus_per_worker
        and (not need_gpu or n["Resources"].get("GPU", 0) >= r.gpu_per_worker)
    ]


def _look(paths: list[tuple[str, str, str]]) -> tuple[str, list[str]]:
    """On one node: its host name and the keys whose path is missing there."""
    import os
    import socket

    missing = [key for key, path, kind in paths if not (os.path.isdir(path) if kind == "folder" else os.path.isfile(path))]
    return socket.gethostname(), missing


def check_nodes_hold_inputs(spec: StudySpec) -> str:
    """Raise one line naming the first node that lacks a path a trial needs; else say what was checked."""
    paths = _paths(spec)
    if not paths:
        return ""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    look = ray.remote(num_cpus=0)(_look)
    nodes = trial_nodes(spec)
    refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths) for n in nodes]
    try:
        answers = ray.get(refs, timeout=CHECK_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"the cluster's nodes did not answer within {CHECK_TIMEOUT_S} s whether they hold data.root") from None
    where = {key: path for key, path, _ in paths}
    for node, (host, missing) in zip(nodes, answers):
        if missing:
            key = missing[0]
            raise UserError(
                f"{key}: {where[key]}: not on node {host} ({node['NodeManagerAddress']}), where trials may run; put it at the "
                "same path on every node (a shared mount, or a copy in the setup commands: cluster/README.md)"
            )
    return f"{' and '.join(key for key, _, _ in paths)} found on the {len(nodes)} node{'s' if len(nodes) != 1 else ''} that can run trials"
