"""The results folder: one run per folder, --force deletes only what af3 wrote, a full disk ends in
one clear line with every row kept, and any --notes text is stored safely."""
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench(out, *extra):
    return ["bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--plain", "--no-plot",
            *(["--out", str(out)] if out else []), *extra]


def test_a_second_run_into_a_busy_folder_is_refused(af3, tmp_path):
    out = tmp_path / "busy"
    first = af3.popen(*_bench(out, "--passes", "200", "--set", "work_ms=50"))
    jsonl = out / "testplugin.jsonl"
    deadline = time.monotonic() + 60
    while not jsonl.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = af3.run(*_bench(out, "--passes", "1", "--force"))
    assert second.returncode == 2 and "another af3 bench" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    first.terminate()
    first.communicate(timeout=60)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {r["run_id"] for r in rows} == {"busy"} and all(r["settings"]["work_ms"] == 50 for r in rows)


def test_runs_started_in_the_same_second_get_their_own_folders(af3, tmp_path):
    procs = [af3.popen(*_bench(None, "--passes", "1")) for _ in range(3)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    folders = sorted((tmp_path / "results").iterdir())
    assert len(folders) == 3
    for folder in folders:
        rows = [json.loads(line) for line in (folder / "testplugin.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["run_id"] == folder.name


def test_force_deletes_only_what_af3_wrote(af3, tmp_path):
    out = tmp_path / "mine"
    assert af3.run(*_bench(out, "--passes", "1")).returncode == 0
    own = {"my_table.csv": "a,b\n", "notes.json": "{}", "figure.png": "png", "logs/my.log": "mine"}
    for name, text in own.items():
        (out / name).write_text(text)
    old_logs = [p.name for p in (out / "logs").iterdir() if p.name != "my.log"]
    proc = af3.run(*_bench(out, "--passes", "2", "--force"))
    assert proc.returncode == 0, proc.stderr
    for name, text in own.items():
        assert (out / name).read_text() == text
    assert not any((out / "logs" / name).exists() for name in old_logs if name not in os.listdir(out / "logs"))
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))
    assert case["n_ok"] == "2"
    assert len((out / "testplugin.jsonl").read_text().splitlines()) == 2  # the old rows are gone


def _limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_ends_in_one_line_and_keeps_the_rows(af3, tmp_path):
    """RLIMIT_FSIZE makes writes past 48 KiB fail as a full disk does (EFBIG instead of ENOSPC)."""
    out = tmp_path / "full"
    env = af3.env()
    proc = subprocess.run([sys.executable, "-m", "af3core", *_bench(out, "--passes", "500")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size(48 * 1024))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("af3: error")]
    assert "cannot write" in line and "rows written before it are kept" in line
    rows = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]  # whole rows only
    assert 5 < len(rows) < 500 and all(r["ok"] for r in rows)
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))
    assert case["status"] == "failed" and "cannot write" in case["error"]


def test_long_non_ascii_notes_reach_every_row(af3, tmp_path):
    out = tmp_path / "notes"
    notes = "ÅlphaFold ✓ 蛋白质 " * 2000  # 36,000 characters: too long for a command line of its own
    proc = af3.run(*_bench(out, "--passes", "2", "--notes", notes))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "testplugin.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["notes"] == notes for r in rows) and rows[0]["info"]["notes_seen"] == notes


def test_notes_that_are_not_utf8_are_stored_with_replacement_characters(af3, tmp_path):
    out = tmp_path / "bytes"
    args = [sys.executable.encode(), b"-m", b"af3core", *(a.encode() for a in _bench(out, "--passes", "1")),
            b"--notes", b"caf\xe9 \xff run"]
    proc = subprocess.run(args, cwd=tmp_path, env=af3.env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.csv", encoding="utf-8") as f:
        [case] = list(csv.DictReader(f))
    assert case["status"] == "ok" and case["notes"] == "caf\ufffd \ufffd run"


def test_a_copy_inside_another_repository_records_no_foreign_commit(plugin_site, tmp_path):
    other = tmp_path / "other"
    (other / "vendor").mkdir(parents=True)
    shutil.copytree(ROOT / "af3core", other / "vendor" / "af3bench" / "af3core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(other)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "vendored"], check=True)
    foreign = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = tmp_path / "vendored"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(other / "vendor" / "af3bench")])}
    proc = subprocess.run([sys.executable, "-m", "af3core", *_bench(out, "--passes", "1")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))
    assert foreign and foreign not in case["af3bench_commit"] and case["af3bench_commit"] == ""
