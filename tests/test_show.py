"""af3 show (a run as one table) and af3 report (environment, table, warnings, plots in one file)."""


def _run(af3, out, *extra):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "6",
                   "--out", out, "--plain", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return af3.cwd / out


def test_show_puts_the_settings_that_differ_in_columns(af3):
    run = _run(af3, "swept", "--sweep", "work_ms=1,3")
    proc = af3.run("show", str(run), "--markdown")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:2] == ["seq_len", "work_ms"] and "median" in header and "spread" in header
    assert "jitter_ms" not in header and "plugin" not in header  # what all cases share is no column
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert sorted((b[0], b[1]) for b in body) == [("16", "1.0"), ("16", "3.0"), ("8", "1.0"), ("8", "3.0")]
    assert all(b[header.index("status")] == "ok" and b[header.index("passes")] == "6" for b in body)
    terminal = af3.run("show", str(run))
    assert terminal.returncode == 0 and "work_ms" in terminal.stdout
    with_figures = af3.run("show", str(run), "--markdown", "--figures").stdout.splitlines()[0]
    assert "checksum" in with_figures and "checksum" not in lines[0]  # the test runner's own figure


def test_several_runs_show_one_after_the_other_with_a_run_column(af3):
    fast, slow = _run(af3, "fast", "--set", "work_ms=1"), _run(af3, "slow", "--set", "work_ms=3")
    proc = af3.run("show", str(fast), str(slow), "--markdown")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["run", "seq_len", "work_ms"]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(b[0], b[2]) for b in body] == [("fast", "1.0"), ("fast", "1.0"), ("slow", "3.0"), ("slow", "3.0")]
    missing = af3.run("show", str(fast), str(af3.cwd / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr


def test_report_holds_environment_table_warnings_and_plots(af3):
    run = _run(af3, "faulty", "--sweep", "fault=none,raise", "--set", "fault_pass=2")
    proc = af3.run("report", str(run))
    assert proc.returncode == 0, proc.stderr
    text = (run / "report.md").read_text()
    assert "## Environment" in text and "command" in text and "bench --plugin testplugin" in text
    assert "| seq_len | fault |" in text
    assert "failed: RuntimeError: injected failure" in text.split("## Warnings")[1]  # failed cases are warned about
    assert "![time_vs_seq_len](time_vs_seq_len.png)" in text
    proc = af3.run("report", str(run), "--html")
    page = (run / "report.html").read_text()
    assert proc.returncode == 0 and page.count("data:image/png;base64,") == 2 and "injected failure" in page


def test_show_and_report_refuse_a_folder_that_is_not_a_run(af3, tmp_path):
    for command in ("show", "report"):
        proc = af3.run(command, str(tmp_path))
        assert proc.returncode == 2 and "summary.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_settings_of_other_plugins_are_no_columns():
    """A run of several plugins: a key that only one plugin has, constant there, tells nothing apart."""
    import json

    from af3core.show import table

    def row(plugin, **settings):
        return {"plugin": plugin, "mode": "trunk", "seq_len": "32", "status": "ok", "settings": json.dumps(settings)}

    header, cells = table([row("a", x=1, dtype="fp32"), row("a", x=2, dtype="fp32"), row("b", y=5, dtype="bf16")])
    assert header[:4] == ["plugin", "seq_len", "dtype", "x"]  # dtype differs within no plugin but across: shown
    assert [line[3] for line in cells] == ["1", "2", ""]
    assert "y" not in header


def test_by_length_puts_one_setting_on_one_line_across_runs(af3):
    # Engines are measured in runs of their own, a size or two at a time: --by-length puts each
    # setting on one line and each length in one column, whichever run measured it.
    small = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "2",
                    "--set", "work_ms=1", "--set", "fault_pass=1", "--out", "small", "--plain", "--no-plot")
    large = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "32", "--passes", "2",
                    "--sweep", "work_ms=1,3", "--sweep", "fault=none,raise", "--set", "fault_pass=1",
                    "--out", "large", "--plain", "--no-plot")
    assert small.returncode == 0 and large.returncode == 1, large.stderr  # the raising cases fail
    proc = af3.run("show", "--by-length", "--markdown", str(af3.cwd / "small"), str(af3.cwd / "large"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["fault", "work_ms", "8", "16", "32"]  # no run column: runs are merged
    body = {tuple(c.strip() for c in line.strip("|").split("|"))[:2]: [c.strip() for c in line.strip("|").split("|")]
            for line in lines[2:]}
    assert set(body) == {("none", "1.0"), ("none", "3.0"), ("raise", "1.0"), ("raise", "3.0")}
    one = body[("none", "1.0")]
    assert all(" ms (" in cell for cell in one[2:])  # 8 and 16 from one run, 32 from the other
    assert body[("none", "3.0")][2:4] == ["", ""] and " ms (" in body[("none", "3.0")][4]
    assert body[("raise", "3.0")][4] == "failed"
    terminal = af3.run("show", "--by-length", str(af3.cwd / "small"))
    assert terminal.returncode == 0 and "16" in terminal.stdout
    both = af3.run("show", "--by-length", "--figures", str(af3.cwd / "small"))
    assert both.returncode == 2 and "--by-length" in both.stderr and "Traceback" not in both.stderr


def test_by_length_names_the_memory_source_only_where_rows_differ():
    import json

    from af3core.show import length_table

    def row(plugin, seq_len, **memory):
        return {"plugin": plugin, "seq_len": str(seq_len), "status": "ok", "median_ms": "1000",
                "settings": json.dumps({}), **memory}

    gpu = row("a", 8, nvml_peak_gpu_bytes=str(2 * 2**30))
    cpu = row("b", 8, worker_peak_rss_bytes=str(2**30))
    _, same = length_table([gpu, row("a", 16, nvml_peak_gpu_bytes=str(2**30))])
    assert same == [["1000.0 ms (2.00 GiB)", "1000.0 ms (1.00 GiB)"]]  # one source: no label
    _, mixed = length_table([gpu, cpu])
    assert [line[1] for line in mixed] == ["1000.0 ms (2.00 GiB GPU, NVML)", "1000.0 ms (1.00 GiB RSS)"]


def test_by_length_drops_an_interrupted_attempt_beside_a_measurement_and_keeps_gpus_apart():
    import json

    from af3core.show import length_table

    def row(seq_len, status="ok", gpu="NVIDIA H100 80GB HBM3"):
        return {"plugin": "a", "seq_len": str(seq_len), "status": status, "median_ms": "2000",
                "nvml_peak_gpu_bytes": str(2**30), "gpu_name": gpu, "settings": json.dumps({})}

    # 1024 stopped by a deadline in one run and measured in the next; 2048 only ever stopped; at 4096
    # an OOM beside a fit stays visible
    rows = [row(1024, "interrupted"), row(1024), row(2048, "interrupted"), row(4096, "oom"), row(4096)]
    header, cells = length_table(rows)
    assert header == ["1024", "2048", "4096"]
    assert cells == [["2000.0 ms (1.00 GiB)", "interrupted", "oom; 2000.0 ms (1.00 GiB)"]]
    header, cells = length_table([row(1024), row(1024, gpu="NVIDIA H200")])
    assert header == ["gpu_name", "1024"] and len(cells) == 2  # two GPU models: two lines, not one cell


def test_the_kernels_an_engine_ran_are_recorded_shown_and_told_apart(af3):
    # The same settings resolve to other kernels on another machine (an "auto" that found a kernel
    # library, or did not): the summary, the progress line and af3 show say which ran.
    runs = {}
    for kernels in ("fused", "reference"):
        proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "2",
                       "--out", kernels, "--plain", "--no-plot", AF3_TESTPLUGIN_KERNELS=kernels)
        assert proc.returncode == 0, proc.stderr
        assert f"kernels: {kernels}" in proc.stdout
        runs[kernels] = af3.cwd / kernels
    import csv
    with open(runs["fused"] / "summary.csv", newline="") as f:
        assert [r["kernels"] for r in csv.DictReader(f)] == ["fused"]
    proc = af3.run("show", "--by-length", "--markdown", *map(str, runs.values()))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["kernels", "8"]
    assert sorted(line.strip("|").split("|")[0].strip() for line in lines[2:]) == ["fused", "reference"]
    alone = af3.run("show", "--markdown", str(runs["fused"])).stdout.splitlines()[0]
    assert "kernels" not in alone  # one value everywhere is no column
