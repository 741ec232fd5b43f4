"""``af3 bench --executor ray``: each case as a Ray task on whatever node Ray places it.

The task runs the case exactly as a local run does (af3core.supervisor: the same worker
subprocess, timeout, crash isolation) on its node, and streams back each row as it is made, then
the case's log and its final record; the host stays the only writer of the results folder. A task
asks for one GPU for a CUDA case (Ray sets ``CUDA_VISIBLE_DEVICES`` on the node), one CPU
otherwise. Before anything runs, a task on every alive node checks that the planned plugins are
available there; a node that lacks one is named with the reason, and nothing runs.

A Ray worker or node that dies, or a task Ray cancels, becomes a failed row with the reason.
Ray's own retries are off (a benchmark must not silently run a case twice); ``--retries N`` turns
them on, and the row then says the case was retried when it was.
Needs ``pip install 'af3-bench[ray]'``; the engine sources and plugin environments must exist on
every node (the check says which node lacks what).
"""
from __future__ import annotations

import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from af3core.errors import UsageError

FIX = "pip install 'af3-bench[ray]' (ray)"


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray: {FIX}") from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at ``address``, or start a local one (no dashboard); the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - an unreachable address, a version mismatch...
            raise UsageError(f"--executor ray: cannot join {address or 'a local Ray instance'}: {exc}") from None
    return ray


def slots(ray, plan) -> int:
    """How many cases the cluster can run at once: its GPUs for CUDA cases, its CPUs otherwise."""
    resources = ray.cluster_resources()
    cuda = any(p.case.device_type == "cuda" for p in plan.cases)
    return max(1, int(resources.get("GPU" if cuda else "CPU", 1)))


def _node_check(plugins: list[str]) -> dict[str, str]:
    """On one node: the planned plugins that are not available there, with the reason."""
    from af3core import discovery

    registry = discovery.load()
    missing = {name: "not installed" for name in plugins if name not in registry.plugins}
    available = registry.availability([n for n in plugins if n in registry.plugins])
    missing.update({name: a.reason for name, a in available.items() if not a.ok})
    return missing


def check_nodes(ray, plan) -> None:
    """UsageError naming each alive node that lacks a planned plugin."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    plugins = sorted({p.plugin.name for p in plan.cases})
    check = ray.remote(num_cpus=0)(_node_check)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(plugins)
            for n in nodes]
    problems = []
    for node, missing in zip(nodes, ray.get(refs)):
        problems += [f"node {node.get('NodeManagerAddress')}: {name}: {why}" for name, why in missing.items()]
    if problems:
        raise UsageError("--executor ray: " + "; ".join(problems))


def _run_on_node(planned, context, timeout_s):
    """The task: run one case on this node; yield ("row", row)..., ("log", text), ("record", record)."""
    from af3core import plan as plan_mod
    from af3core import supervisor
    from af3core.record import CaseRecord

    # The worker's environment is this node's, plus the plugin's variables and the GPU Ray gave the task.
    env = {**plan_mod.worker_env(planned.plugin, plan_mod.resolve_device("cpu")), **_pin_env(planned)}
    planned = type(planned)(planned.plugin, planned.case, planned.case_id, planned.group, env, _gpu_facts(planned))
    record = CaseRecord(planned, context)
    rows: queue.Queue = queue.Queue()
    folder = Path(tempfile.mkdtemp(prefix="af3-ray-"))
    log_path = folder / f"{planned.case_id}.log"

    def run() -> None:
        try:
            supervisor.run_case(record, log_path, timeout_s, lambda r, row: rows.put(("row", row)), lambda r: None,
                                lambda: None)
        finally:
            rows.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while (item := rows.get()) is not None:
        yield item
    thread.join()
    try:
        yield "log", log_path.read_bytes()
    except OSError:
        yield "log", b""
    yield "record", record


def _pin_env(planned) -> dict[str, str]:
    if planned.case.device_type != "cuda":
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")  # what Ray set for the task's GPU
    return {"CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def _gpu_facts(planned) -> dict[str, Any]:
    if planned.case.device_type != "cuda":
        return {}
    from af3core import devices

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    index = int(visible) if visible.isdigit() else None
    if index is None:
        return dict(planned.gpu)
    return {"gpu_name": devices.gpu_name(index), "gpu_index": index, "gpu_uuid": devices.gpu_uuid(index)}


class RayExecutor:
    """Runs cases as Ray tasks; ``slots`` of them at once (the host's threads, af3core.run)."""

    def __init__(self, address: str | None, retries: int, plan):
        if retries < 0:
            raise UsageError("--retries must be 0 or more")
        self.ray = connect(address)
        check_nodes(self.ray, plan)
        self.retries = retries
        self.slots = slots(self.ray, plan)
        self._active: set = set()
        self._lock = threading.Lock()

    def cancel_all(self) -> None:
        """Stop every running task (the run is stopping): Ray kills its worker process, whose death
        takes the case's worker subprocess with it (it watches its parent)."""
        with self._lock:
            for stream in self._active:
                self.ray.cancel(stream, force=True)

    def run_case(self, record, log_path: Path, timeout_s, on_row: Callable, on_update: Callable,
                 stop_requested: Callable[[], str | None]) -> None:
        """Run ``record``'s case as a Ray task and fold what it streams back into ``record``."""
        ray = self.ray
        gpu = record.planned.case.device_type == "cuda"
        task = ray.remote(_run_on_node).options(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0,
                                                 max_retries=self.retries, retry_exceptions=False,
                                                 num_returns="streaming")
        stream = task.remote(record.planned, record.context, timeout_s)
        with self._lock:
            self._active.add(stream)
        try:
            for ref in stream:
                kind, value = ray.get(ref)
                if kind == "row":
                    record.passes.append(value)
                    record.phase = "warmup" if value.get("warmup") else "pass"
                    record.pass_index = value.get("pass_index")
                    on_row(record, value)
                elif kind == "log":
                    log_path.write_bytes(value)
                elif kind == "record":
                    _adopt(record, value)
                on_update(record)
        except ray.exceptions.RayError as exc:
            reason = stop_requested()
            if reason:
                record.stop("interrupted", reason)
            else:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                record.stop("crashed", f"ray: {type(exc).__name__}: {first}"[:2000])
        finally:
            with self._lock:
                self._active.discard(stream)
        if record.status == "pending":
            record.stop("crashed", "ray: the task ended without the case's record")
        if record.status != "ok" and not any(not p["ok"] for p in record.passes):
            row = record.finish(None, "")
            if row is not None:
                on_row(record, row)


def _adopt(record, remote) -> None:
    """Take the node's final record (status, figures, failure...), keeping the host's identity."""
    passes = record.passes
    for key, value in vars(remote).items():
        if key not in ("planned", "context", "passes", "log_path", "_shared", "_env"):
            setattr(record, key, value)
    record.passes = passes
    record.planned = type(record.planned)(record.planned.plugin, record.planned.case, record.planned.case_id,
                                          record.planned.group, remote.planned.env, remote.planned.gpu)
