"""What a run leaves behind: per-pass JSONL, the summary, metadata, plots; and Ctrl-C keeps it all."""
import csv
import json
import signal
import statistics
import time

PASS_FIELDS = {"plugin", "settings", "pass_index", "start_ts", "elapsed_ms", "compile_ms", "device", "gpu_name",
               "seq_len", "mode", "notes", "ok", "error", "preset", "engine_source_version", "env", "worker_pid"}


def test_rows_summary_and_meta(af3, tmp_path):
    out = tmp_path / "run"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,24", "--passes", "5",
                   "--set", "work_ms=2", "--notes", "nightly", "--out", str(out), "--plain")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert PASS_FIELDS <= set(rows[0])
    assert [r["pass_index"] for r in rows] == [0, 1, 2, 3, 4] * 2
    assert all(r["ok"] and r["elapsed_ms"] >= 2.0 and r["notes"] == "nightly" for r in rows)
    assert rows[0]["settings"]["work_ms"] == 2.0 and rows[0]["engine_source_version"] == "test-1"
    assert rows[0]["env"]["AF3_TESTPLUGIN_ENV"] == "from-plugin"  # the plugin's environment reached the worker
    assert rows[0]["info"]["env_seen"] == "from-plugin"
    assert rows[0]["compile_info"]["compile_only_ms"] == 1.5  # what compile() returned reaches every row

    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [int(s["seq_len"]) for s in summary] == [8, 24]
    for s in summary:
        times = [r["elapsed_ms"] for r in rows if r["seq_len"] == int(s["seq_len"])]
        assert float(s["median_ms"]) == statistics.median(times)
        assert float(s["min_ms"]) == min(times)
        assert float(s["min_ms"]) <= float(s["p95_ms"]) <= max(times)
        assert s["n_ok"] == "5" and s["n_failed"] == "0" and s["status"] == "ok"
        assert float(s["compile_ms"]) > 0 and int(s["worker_peak_rss_bytes"]) > 10 * 2**20
        assert s["python"] and s["af3bench_version"] and s["host"]
        assert float(s["compile_only_ms"]) == 1.5

    meta = json.loads((out / "meta.json").read_text())
    assert meta["command_line"][1:4] == ["bench", "--plugin", "testplugin"]
    assert meta["n_cases"] == 2 and meta["n_failed"] == 0 and meta["interrupted"] is False
    assert "libraries" in meta and "env" in meta

    assert (out / "time_vs_seq_len.png").stat().st_size > 1000  # more than one size: plotted automatically
    assert (out / "memory_vs_seq_len.png").stat().st_size > 1000


def test_plot_command_rewrites_plots(af3, tmp_path):
    out = tmp_path / "run"
    af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "1",
            "--out", str(out), "--no-plot")
    assert not (out / "time_vs_seq_len.png").exists()
    proc = af3.run("plot", str(out))
    assert proc.returncode == 0 and (out / "time_vs_seq_len.png").exists()


def test_engines_and_kernels_get_a_pair_of_plots_each(tmp_path):
    """Tokens and a kernel's R are not one axis: a run of both kinds plots each kind apart."""
    import csv

    from af3core.plot import plot_run
    from af3core.writers import SUMMARY_FILE

    run = tmp_path / "mixed"
    run.mkdir()
    rows = [{"run_id": "r", "plugin": plugin, "plugin_kind": kind, "mode": "m", "preset": "", "seq_len": n,
             "status": "ok", "settings": "{}", "median_ms": str(n / 10), "min_ms": str(n / 11),
             "max_ms": str(n / 9), "framework_peak_bytes": str(n * 2**20)}
            for plugin, kind in (("ligo", "engine"), ("kernels", "kernel")) for n in (128, 256)]
    with open(run / SUMMARY_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert sorted(p.name for p in plot_run(run)) == [
        "memory_vs_seq_len_engine.png", "memory_vs_seq_len_kernel.png",
        "time_vs_seq_len_engine.png", "time_vs_seq_len_kernel.png"]


def test_plot_title_counts_result_folders_not_run_names(tmp_path):
    """Two folders named alike (one --out name on two machines) are two runs in the title."""
    from af3core.plot import _title, plotted_rows
    from af3core.writers import SUMMARY_FILE

    runs = [tmp_path / machine / "boltz-oom" for machine in ("a", "b")]
    for run, n in zip(runs, (2048, 2560)):
        run.mkdir(parents=True)
        (run / SUMMARY_FILE).write_text("run_id,plugin,mode,seq_len,status,settings,median_ms\n"
                                        f"boltz-oom,boltz,trunk,{n},ok,{{}},{n / 10}\n")
    rows = plotted_rows(runs)
    assert len(rows) == 2
    assert _title(rows, "Peak memory").endswith(", 2 runs)")
    assert _title(rows[:1], "Peak memory").endswith(", run boltz-oom)")


def test_plot_title_of_many_machines_and_commits_wraps_to_the_figure():
    from af3core.plot import TITLE_WIDTH, _title

    rows = [{"gpu_name": gpu, "af3bench_commit": f"{i:012x}-dirty", "run_id": f"run-{i}", "_results_folder": str(i)}
            for i, gpu in enumerate(["NVIDIA H100 80GB HBM3", "NVIDIA H200"] * 4)]
    title = _title(rows, "Median pass time")
    lines = title.splitlines()
    assert len(lines) > 1 and all(len(line) <= TITLE_WIDTH for line in lines)
    assert " ".join(lines) == ("Median pass time: NVIDIA H100 80GB HBM3, NVIDIA H200 (af3-bench "
                               + ", ".join(f"{i:012x}-dirty" for i in range(8)) + ", 8 runs)")


def test_several_runs_plot_together_into_out(af3, tmp_path):
    runs = []
    for work in ("1", "3"):
        runs.append(tmp_path / f"run-{work}")
        af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "1",
                "--set", f"work_ms={work}", "--out", str(runs[-1]), "--no-plot")
    proc = af3.run("plot", *map(str, runs))
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr
    together = tmp_path / "together"
    proc = af3.run("plot", *map(str, runs), "--out", str(together))
    assert proc.returncode == 0, proc.stderr
    assert (together / "time_vs_seq_len.png").stat().st_size > 1000 and (together / "memory_vs_seq_len.png").exists()
    assert not (runs[0] / "time_vs_seq_len.png").exists()


def test_ctrl_c_keeps_rows_writes_summary_and_exits_130(af3, tmp_path):
    out = tmp_path / "interrupted"
    proc = af3.popen("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "500",
                     "--set", "work_ms=20", "--out", str(out), "--plain")
    jsonl = out / "testplugin.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sum(r["ok"] for r in rows) >= 3
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))  # the second size never started
    assert case["status"] == "interrupted" and int(case["n_ok"]) >= 3
    assert json.loads((out / "meta.json").read_text())["interrupted"] is True


def test_warmup_passes_are_recorded_but_left_out_of_statistics(af3, tmp_path):
    out = tmp_path / "warm"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "3",
                   "--warmup", "2", "--out", str(out), "--plain")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]
    assert [(r["warmup"], r["pass_index"]) for r in rows] == [(True, 0), (True, 1), (False, 0), (False, 1),
                                                              (False, 2)]
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))
    assert (case["n_ok"], case["n_warmup"], case["status"]) == ("3", "2", "ok")
    timed = [r["elapsed_ms"] for r in rows if not r["warmup"]]
    assert float(case["median_ms"]) == statistics.median(timed)
    assert float(case["min_ms"]) == min(timed)


def test_a_plugin_can_run_under_another_interpreter(af3, tmp_path):
    """AF3_PYTHON_<NAME> picks the worker's interpreter (an engine's own virtual environment)."""
    import sys

    wrapper = tmp_path / "python-for-testplugin"
    wrapper.write_text(f"#!/bin/sh\nexport AF3_TESTPLUGIN_ENV=via-wrapper\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    out = tmp_path / "other-python"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out", str(out),
                   AF3_PYTHON_TESTPLUGIN=str(wrapper))
    assert proc.returncode == 0, proc.stderr
    [row] = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]
    assert row["info"]["env_seen"] == "via-wrapper" and row["worker_python"] == sys.executable


def test_an_interpreter_without_af3_needs_is_a_clear_failure(af3, tmp_path):
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\nexec /usr/bin/env -i python3 -I \"$@\"\n")  # no venv, no PYTHONPATH
    bare.chmod(0o755)
    out = tmp_path / "bare"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out", str(out),
                   AF3_PYTHON_TESTPLUGIN=str(bare))
    # Found before any case starts: the plugin's availability is checked under its own interpreter.
    assert proc.returncode == 2
    assert str(bare) in proc.stderr and "No module named 'af3core'" in proc.stderr
    assert "setup.sh --engine-env testplugin" in proc.stderr and "Traceback" not in proc.stderr


def test_the_summary_carries_the_spread_and_the_cpu_state(af3):
    """150 ms passes (sleep jitter stays well under 5% even on a loaded CI machine): spread columns
    consistent, not noisy; the CPU's model, count and load are in the row."""
    import csv

    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "6",
                   "--set", "work_ms=150", "--out", "steady", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = next(csv.DictReader(open(af3.cwd / "steady" / "summary.csv")))
    assert float(row["max_ms"]) >= float(row["median_ms"]) >= float(row["min_ms"])
    assert float(row["rel_stdev"]) < 0.05 and row["noisy"] == "False"
    assert row["cpu_count"] and row["load_avg_1m_at_start"]
    assert "±" in proc.stdout  # the done line shows the spread


def test_noisy_means_a_relative_stdev_over_5_percent_over_3_passes_or_more():
    from af3core import stats

    assert stats.time_summary([10.0, 10.1, 9.9, 10.0])["noisy"] is False
    wide = stats.time_summary([10.0, 12.0, 8.0, 10.0])
    assert wide["noisy"] is True and abs(wide["rel_stdev"] - 0.1633) < 1e-3
    assert stats.time_summary([10.0, 20.0])["noisy"] is False  # too few passes to say


def test_plot_legends_name_only_the_settings_that_differ():
    from af3core.plot import labeller

    rows = [{"plugin": "k", "mode": "fwd", "preset": "", "settings": '{"impl": "torch", "dtype": "bf16", "reps": 5}'},
            {"plugin": "k", "mode": "fwd", "preset": "", "settings": '{"impl": "fused", "dtype": "bf16", "reps": 5}'},
            {"plugin": "k", "mode": "fwd", "preset": "", "settings": '{"impl": "fused", "dtype": "fp32", "reps": 5}'}]
    label = labeller(rows)
    assert [label(r) for r in rows] == ["dtype=bf16 impl=torch", "dtype=bf16 impl=fused", "dtype=fp32 impl=fused"]
    assert labeller(rows[:1])(rows[0]) == "k fwd"  # one line: nothing differs
    engines = [{"plugin": "boltz", "mode": "trunk", "preset": "default", "settings": '{"use_kernels": "auto", "dtype": "bf16"}'},
               {"plugin": "boltz", "mode": "trunk", "preset": "default", "settings": '{"use_kernels": "off", "dtype": "bf16"}'},
               {"plugin": "ligo", "mode": "trunk", "preset": "paper", "settings": '{"kernels": "af3", "dtype": "bf16"}'}]
    label = labeller(engines)  # a setting only one engine has is no difference between engines
    assert [label(r) for r in engines] == ["boltz default use_kernels=auto", "boltz default use_kernels=off", "ligo paper"]
    gpus = [{**engines[0], "gpu_name": gpu} for gpu in ("NVIDIA H100 80GB HBM3", "NVIDIA H200")]
    label = labeller(gpus)  # one setting on two GPU models: two lines
    assert [label(r) for r in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA H200"]
    resolved = [{**engines[0], "kernels": kernels} for kernels in ("cuequivariance", "torch")]
    label = labeller(resolved)  # one setting whose "auto" ran other kernels on another machine: two lines
    assert [label(r) for r in resolved] == ["kernels: cuequivariance", "kernels: torch"]


def test_nonfinite_outputs_names_the_tensors_with_nan_or_inf():
    import torch

    from af3core import nonfinite_outputs

    out = {"s": torch.ones(3), "z": torch.tensor([1.0, float("nan")]), "p": torch.tensor([float("inf")]),
           "empty": torch.empty(0), "meta": "not a tensor"}
    assert nonfinite_outputs(out) == ["z", "p"]
    assert nonfinite_outputs(out, ("p", "s", "absent")) == ["p"]  # the keys asked for, in their order
    assert nonfinite_outputs(out, ("s", "empty", "meta")) == []


def test_a_setting_measured_twice_at_one_length_is_one_point():
    """Two runs of one case (a retry, say) give one point per length: the median of the medians, the
    bar over both runs' passes, the higher memory peak; not a vertical line through each row."""
    from af3core.plot import _errorbars, _peaks

    rows = [{"seq_len": "1024", "median_ms": "48000", "min_ms": "47000", "max_ms": "49000", "nvml_peak_gpu_bytes": str(16 * 2**30)},
            {"seq_len": "512", "median_ms": "18000", "min_ms": "18000", "max_ms": "18000", "nvml_peak_gpu_bytes": str(20 * 2**30)},
            {"seq_len": "512", "median_ms": "14000", "min_ms": "", "max_ms": "", "nvml_peak_gpu_bytes": str(19 * 2**30)},
            {"seq_len": "512", "median_ms": "", "min_ms": "", "max_ms": "", "nvml_peak_gpu_bytes": ""}]
    xs, ys, lo, hi = _errorbars(rows, "median_ms")
    assert xs == [512, 1024] and ys == [16000, 48000]
    assert lo == [2000, 1000] and hi == [2000, 1000]
    assert _peaks(rows, "nvml_peak_gpu_bytes") == [(512, 20.0), (1024, 16.0)]
