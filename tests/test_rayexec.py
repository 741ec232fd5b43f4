"""--executor ray (af3core.rayexec): each case a Ray task on a local Ray instance the run starts;
the results folder as a local run's; a dead Ray worker a failed row with the reason."""
import csv
import json

import pytest

pytest.importorskip("ray", reason="--executor ray needs Ray: pip install 'af3-bench[ray]'")


def _summary(out):
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_cases_run_as_ray_tasks_and_leave_a_local_runs_folder(af3, tmp_path):
    out = tmp_path / "ray"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16,24", "--passes", "2",
                   "--sweep", "fault=none,segfault,kill_parent", "--set", "fault_pass=1", "--set", "work_ms=20",
                   "--executor", "ray", "--out", str(out), "--plain", "--no-plot", timeout=600)
    if proc.returncode == 2 and "cannot join a local Ray instance" in proc.stderr:
        pytest.skip(f"Ray cannot start on this machine: {proc.stderr.strip().splitlines()[-1][:300]}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = _summary(out)
    assert len(summary) == 9
    by = {(s["seq_len"], json.loads(s["settings"])["fault"]): s for s in summary}
    for n in ("8", "16", "24"):
        assert by[(n, "none")]["status"] == "ok" and by[(n, "none")]["n_ok"] == "2"
        assert by[(n, "segfault")]["status"] == "crashed" and "SIGSEGV" in by[(n, "segfault")]["error"]
        dead = by[(n, "kill_parent")]
        assert dead["status"] == "crashed" and dead["error"].startswith("ray: "), dead["error"]
    rows = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]
    order = [s["case_id"] for s in summary]
    assert [r["case_id"] for r in rows] == sorted((r["case_id"] for r in rows), key=order.index)  # plan order
    assert json.loads((out / "meta.json").read_text())["executor"]["name"] == "ray"
    assert (out / "logs" / f"{by[('8', 'none')]['case_id']}.log").exists()


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--jobs", "2"], "places the cases itself"),
    (["--retries", "1"], "apply to --executor ray"),
    (["--executor", "ray", "--retries", "-1", "--seq-len", "8"], "--retries must be 0 or more"),
])
def test_bad_ray_options_are_usage_errors(af3, args, message):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", *args,
                   *(["--dry-run"] if "-1" not in args else []), timeout=300)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
