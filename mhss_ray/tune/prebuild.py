"""Building the decode cache (`data.cache_dir`) before a study's first trial, with every CPU.

Without this the trials would start together, and the first of them would build each split's cache
with its own few DataLoader workers while the others wait. Locally the driver builds it; on a cluster
one Ray task per node that can run trials builds that node's cache with the node's CPUs, all nodes at
once (on a folder the nodes share, the first builds and the others wait for it and open it). A node
the autoscaler adds later builds its own at its first trial.
"""

from __future__ import annotations

import os

from ..errors import UserError
from .nodes import trial_nodes
from .space import StudySpec


def needs_cache(spec: StudySpec) -> bool:
    from ..data.decode_cache import AUTO, OFF
    from ..registry import DATASETS

    cfg = spec.base_config
    return cfg.data.cache_dir not in (OFF, AUTO) and DATASETS.get(cfg.data.name).reads_files


def check_cache_here(spec: StudySpec, address: str | None) -> None:
    """Locally, before the study writes anything: the cache folder can be written and is no dataset folder
    (on a cluster each node's trial checks its own, where the folder may exist only on the nodes)."""
    from ..data.decode_cache import check_cache_dir

    if address is None and needs_cache(spec):
        check_cache_dir(spec.base_config.data.cache_dir, [spec.base_config.data.root])


def build_here(spec: StudySpec, say=lambda line: print(line, flush=True)) -> None:
    """Every split's cache entry of the study's base config, on this machine, with all its CPUs."""
    from ..data import build_dataset
    from ..data.decode_cache import open_split_caches

    bundle = build_dataset(spec.base_config)
    open_split_caches((bundle.train, bundle.val, bundle.test), say=say, workers=os.cpu_count() or 1)


def _build_on_node(spec: StudySpec) -> str:
    import socket

    import ray

    build_here(spec)  # its lines reach the driver's console with Ray's prefix naming the node
    print(f"decode cache: ready on node {socket.gethostname()}", flush=True)
    return ray.util.get_node_ip_address()


def prebuild_decode_cache(spec: StudySpec, address: str | None) -> list[str]:
    """The addresses of the nodes that built or opened their cache (none locally, or without a cache)."""
    if not needs_cache(spec):
        return []
    if address is None:
        build_here(spec)
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    build = ray.remote(num_cpus=0)(_build_on_node)  # before any trial: the node's CPUs are free
    refs = [
        build.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(spec) for n in trial_nodes(spec)
    ]
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:  # a user mistake on a node: its one line, not Ray's traceback
        if isinstance(exc.cause, UserError):
            raise UserError(str(exc.cause)) from None
        raise
