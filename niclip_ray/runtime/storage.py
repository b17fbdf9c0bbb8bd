"""Shared storage: a stage's output directory must be one every node of the cluster sees.

Actors on any node write a stage's part files straight into its output directory, and the
next stage reads them from any node. On one machine that always holds. On a cluster a
directory on one node's own disk would collect parts on the wrong node, and a path inside
Ray's per-node copy of a job's working directory (where a relative path lands when the
command runs as a Ray Job) disappears with the job. :func:`check_shared_dir` refuses both
before any work starts: by the path's form, then by asking a task on every live node
whether it sees a probe file the driver wrote there.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from niclip_ray.errors import ConfigError
from niclip_ray.runtime.session import live_nodes

#: How long the probe tasks may take before the check gives up (seconds).
PROBE_TIMEOUT_S = float(os.environ.get("NICLIP_STORAGE_PROBE_TIMEOUT_S", 120))
PROBE_PREFIX = ".niclip-storage-probe-"
STORAGE_DOC = "every node must mount it at the same path (docs/runtime.md, 'Shared storage')"


def ray_temp_dir() -> Path | None:
    """This node's Ray temporary directory (it holds a job's copy of its working directory), if connected."""
    import ray

    try:
        return Path(ray.get_runtime_context().get_temp_dir()).resolve()
    except Exception:  # not connected
        return None


def _sees(path: str) -> bool:
    return os.path.exists(path)


def probe_nodes(probe: Path, nodes: list[dict]) -> dict[str, bool]:
    """For each node id, whether a task placed on that node sees ``probe``.

    Raises
    ------
    ConfigError
        When the probe tasks do not finish within :data:`PROBE_TIMEOUT_S`.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    sees = ray.remote(num_cpus=0, max_retries=0)(_sees)
    refs = {node["NodeID"]: sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
            .remote(str(probe)) for node in nodes}
    try:
        answers = ray.get(list(refs.values()), timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as exc:
        raise ConfigError(f"could not check within {PROBE_TIMEOUT_S:g} s that every node sees {probe.parent} "
                          f"(NICLIP_STORAGE_PROBE_TIMEOUT_S)") from exc
    return dict(zip(refs, answers))


def check_shared_dir(out_dir: Path, what: str = "the output directory") -> None:
    """Refuse ``out_dir`` when some live node of a multi-node cluster cannot see it.

    A cluster of one node (the embedded Ray, one ``ray start --head``) passes without a
    check.

    Raises
    ------
    ConfigError
        One line naming the directory, why, and the nodes that do not see it.
    """
    nodes = live_nodes()
    if len(nodes) < 2:
        return
    out_dir = Path(out_dir).resolve()
    ray_dir = ray_temp_dir()
    if ray_dir is not None and out_dir.is_relative_to(ray_dir):
        raise ConfigError(f"{what} {out_dir} is inside this node's Ray directory (a relative path in a "
                          f"Ray Job lands in the job's copy of its working directory): give an absolute path; "
                          f"{STORAGE_DOC}")
    probe = out_dir / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    probe.touch()
    try:
        seen = probe_nodes(probe, nodes)
    finally:
        probe.unlink(missing_ok=True)
    blind = [node["NodeManagerAddress"] + " (" + node["NodeID"][:8] + ")" for node in nodes if not seen[node["NodeID"]]]
    if blind:
        raise ConfigError(f"{what} {out_dir} is not visible from {len(blind)} of {len(nodes)} nodes "
                          f"({', '.join(blind)}): the stage writes its parts there from every node; {STORAGE_DOC}")
