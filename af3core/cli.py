"""The ``af3`` command: ``af3 plugins``, ``af3 bench``, ``af3 plot``, ``af3 compare``, ``af3 show``,
``af3 report``."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from af3core import __version__, discovery, envs, stopping
from af3core.errors import UsageError
from af3core.plan import DEFAULT_MAX_CASES, Choices, build_plan
from af3core.writers import clean_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_TIMEOUT_S = 3600.0
#: --notes travels to every row; longer text belongs in a file next to the results.
NOTES_MAX_CHARS = 100_000


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit 2 like every other user mistake."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message}")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _percent(text: str) -> float:
    """``1``, ``1%`` or ``0.5``: a percentage above 0, returned as a fraction."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 1 or 0.5%, not {text!r}") from None
    if not math.isfinite(value) or not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"expected a percentage between 0 and 100, not {text!r}")
    return value / 100


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="af3", description="Benchmark AlphaFold-class engines and their GPU kernels.")
    parser.add_argument("--version", action="version", version=f"af3-bench {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("plugins", help="list the engine and kernel plugins found, and whether each can run here; "
                                       "with NAME, that plugin's settings, presets and modes")
    p.add_argument("name", nargs="?", metavar="NAME", help="one plugin: its settings (type, default, choices, help)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    b = sub.add_parser("bench", help="run benchmarks (no arguments: every available plugin at its quick defaults)")
    b.add_argument("--plugin", "--engine", dest="plugins", action="append", default=[], metavar="NAME",
                   help="plugin to run (repeatable, or 'all'; default all available)")
    b.add_argument("--mode", choices=None, help="toy, trunk or full for engines (default: the plugin's, trunk); "
                   "fwd, bwd or fwdbwd for kernels")
    b.add_argument("--full", dest="mode", action="store_const", const="full", help="alias of --mode full")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    b.add_argument("--seq-len", help="tokens (R for kernels): 256, 64,128,256 or 64:512:64")
    b.add_argument("--passes", type=int, help="timed passes after the compile/warm-up call (default: the plugin's)")
    b.add_argument("--warmup", type=int, help="passes after the compile call left out of the statistics "
                   "(default: the plugin's, usually 0)")
    b.add_argument("--preset", help="plugin-defined settings bundle, e.g. small or default")
    b.add_argument("--set", dest="sets", action="append", default=[], metavar="[PLUGIN:]KEY=VALUE",
                   help="a plugin setting (repeatable); unscoped, it goes to every selected plugin that has it")
    b.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="[PLUGIN:]KEY=V1,V2,...",
                   help="run every value of a setting (repeatable: the product of all sweeps, times the "
                        "sizes); routed like --set")
    b.add_argument("--notes", default="", help="free text stored in every row")
    b.add_argument("--out", help="output folder (default results/<timestamp>/)")
    b.add_argument("--force", action="store_true", help="reuse an existing output folder, replacing its results")
    b.add_argument("--min-time", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="after --passes, go on until the timed passes add up to this much time")
    b.add_argument("--max-noise", type=_percent, default=None, metavar="PCT",
                   help="after --passes (and --min-time), go on until the median is known to within "
                        "+-PCT percent (its 95%% interval) or --max-time runs out; the row's stopped_by says which")
    b.add_argument("--max-time", type=_positive_seconds, default=None, metavar="SECONDS",
                   help=f"with --max-noise: stop when the timed passes add up to this much time "
                        f"(default {stopping.DEFAULT_MAX_TIME_S:g})")
    b.add_argument("--gpus", metavar="LIST", help="run cases at once, one worker per listed GPU (NVML indices, "
                   "e.g. 0,1,2,3, or all), each pinned to its GPU; list one twice to share it")
    b.add_argument("--jobs", type=int, metavar="N", help="run N cases at once on the selected device (their "
                   "timings disturb each other on one device: for CPU sweeps of mechanics, not figures)")
    b.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where cases run: local (default; --gpus/--jobs slots) or ray (each case a Ray task "
                        "on a node of the cluster; pip install 'af3-bench[ray]')")
    b.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: the cluster to join "
                   "(default: a local Ray instance started for the run)")
    b.add_argument("--retries", type=int, default=0, metavar="N",
                   help="with --executor ray: let Ray rerun a case whose worker or node died, N times "
                        "(default 0: a benchmark does not silently run a case twice)")
    b.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                   help=f"wall-clock limit per case (default {DEFAULT_TIMEOUT_S:g})")
    b.add_argument("--until-oom", action="store_true",
                   help="grow --seq-len (a range; START::STEP is open-ended) per setting until a case fails; "
                        "when it ran out of memory, record the largest size that fitted")
    b.add_argument("--max-cases", type=int, default=DEFAULT_MAX_CASES, metavar="N",
                   help=f"refuse a plan of more cases than this (default {DEFAULT_MAX_CASES})")
    b.add_argument("--in-process", action="store_true",
                   help="run the runner in this process, without worker or pipe (a cross-check of the harness "
                        "against a bare loop; no timeout, no crash isolation)")
    b.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    b.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    b.add_argument("--no-plot", action="store_true", help="do not write plots at the end")

    pl = sub.add_parser("plot", help="write PNG plots of a finished run, or of several runs together (--out)")
    pl.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="results folder(s) of af3 bench")
    pl.add_argument("--out", type=Path, help="where the plots of several runs go (default: the one RUN)")

    c = sub.add_parser("compare", help="two runs (or two settings of one run) case by case, with a verdict; "
                                       "exit 1 when something got slower")
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="RUN_A RUN_B, or one RUN with --by")
    c.add_argument("--by", metavar="KEY[=BASE]", help="within one run: cases differing only in setting KEY, "
                                                     "each against KEY=BASE (default: the first value met)")
    c.add_argument("--threshold", default="5%", help="smallest change that counts (default 5%%)")
    c.add_argument("--markdown", action="store_true", help="a markdown table instead of the terminal table")
    c.add_argument("--csv", type=Path, metavar="FILE", help="also write the table to FILE")

    sh = sub.add_parser("show", help="a run as one table: a line per case, the settings that differ as columns; "
                                     "several runs one after the other, with a run column")
    sh.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    sh.add_argument("--markdown", action="store_true", help="a markdown table instead of the terminal table")
    sh.add_argument("--figures", action="store_true", help="also the runner's own figures (medians: ms_tri_attn, "
                                                           "ms_per_100_residues, floor_ms...)")
    sh.add_argument("--by-length", action="store_true",
                    help="a line per setting (plugin, mode, preset, the settings that differ), a column per "
                         "sequence length: median (peak memory); runs of one engine or size each are merged "
                         "(an interrupted attempt beside a measurement is left out; GPU models stay apart)")

    rp = sub.add_parser("report", help="one document of a run: environment, table, warnings and plots "
                                       "(RUN/report.md, or report.html with --html)")
    rp.add_argument("dir", type=Path, metavar="RUN")
    rp.add_argument("--html", action="store_true", help="one self-contained HTML file, plots embedded")
    return parser


# ---------------------------------------------------------------- af3 plugins

def _plugin_entries(registry: discovery.Registry) -> list[dict]:
    availability = registry.availability()
    entries = []
    for name, plugin in sorted(registry.plugins.items()):
        a = availability[name]
        python, python_source = envs.interpreter(plugin)
        entries.append({"name": name, "kind": plugin.kind, "distribution": plugin.distribution,
                        "version": plugin.version, "available": a.ok, "reason": a.reason, "fix": a.fix,
                        "python": python, "python_source": python_source,
                        "source_version": a.source_version, "modes": list(plugin.modes),
                        "presets": list(plugin.presets), "description": plugin.description,
                        "default_mode": plugin.default_mode,
                        "preset_values": {k: dict(v) for k, v in plugin.presets.items()},
                        "settings": {k: {"type": type(v.default).__name__, "default": v.default, "help": v.help,
                                         "choices": list(v.choices) if v.choices is not None else None}
                                     for k, v in plugin.settings.items()},
                        "setting_prefixes": list(plugin.setting_prefixes)})
    for name, claimants in sorted(registry.conflicts.items()):
        fix = "keep one of them: " + " or ".join(f"pip uninstall {p.distribution}" for p in claimants)
        for p in claimants:
            entries.append({"name": name, "kind": "conflict", "distribution": p.distribution, "version": p.version,
                            "available": False, "reason": registry.conflict_text(name), "fix": fix,
                            "source_version": None})
    for b in registry.broken:
        entries.append({"name": b.name, "kind": "broken", "distribution": b.distribution, "version": b.version,
                        "available": False, "reason": b.error, "fix": "", "source_version": None})
    return entries


def _print_plugin(entry: dict) -> None:
    """One plugin: what it is, whether it runs here, its modes, presets and settings."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    runs = "runs here" if entry["available"] else f"does not run here: {entry['reason']}" + (
        f" (fix: {entry['fix']})" if entry["fix"] else "")
    console.print(f"[bold]{entry['name']}[/bold] ({entry['kind']}, {entry['distribution']} {entry['version']}): "
                  f"{entry.get('description') or ''}\n{runs}")
    if entry.get("python"):
        console.print(f"workers run under: {entry['python']} ({entry['python_source']})", highlight=False)
    if entry.get("modes"):
        console.print(f"modes: {', '.join(entry['modes'])} (default {entry.get('default_mode')})")
    for name, values in (entry.get("preset_values") or {}).items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "the settings' defaults"
        console.print(f"preset {name}: {shown}")
    table = Table(title=f"settings of {entry['name']} (--set KEY=VALUE)")
    for col in ("setting", "type", "default", "choices", "help"):
        table.add_column(col, overflow="fold")
    for key, s in (entry.get("settings") or {}).items():
        table.add_row(key, s["type"], str(s["default"]), ", ".join(map(str, s["choices"] or [])), s["help"])
    console.print(table)
    if entry.get("setting_prefixes"):
        console.print(f"also any key starting with: {', '.join(entry['setting_prefixes'])}")


def cmd_plugins(args) -> int:
    entries = _plugin_entries(discovery.load())
    if args.name is not None:
        chosen = [e for e in entries if e["name"] == args.name]
        if not chosen:
            known = ", ".join(sorted({e["name"] for e in entries})) or "none"
            raise UsageError(f"no plugin named {args.name!r} (plugins: {known})")
        if args.json:
            print(json.dumps(chosen[0] if len(chosen) == 1 else chosen, indent=2, default=str))
        else:
            for entry in chosen:
                _print_plugin(entry)
        return EXIT_OK
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title="af3-bench plugins")
    for col in ("name", "kind", "distribution", "version", "runs here", "why not / fix"):
        table.add_column(col)
    for e in entries:
        if e["available"]:
            runs = "[green]yes[/green]" + (f" ({e['source_version']})" if e.get("source_version") else "")
        else:
            runs = {"broken": "[red]broken[/red]", "conflict": "[red]conflict[/red]"}.get(e["kind"], "[yellow]no[/yellow]")
        if e.get("python_source", envs.HOST) != envs.HOST:
            runs += f"\nunder {e['python']}"
        why = "" if e["available"] else e["reason"] + (f"\nfix: {e['fix']}" if e["fix"] else "")
        table.add_row(e["name"], e["kind"], e["distribution"], e["version"], runs, why)
    Console().print(table if entries else "no plugins installed (entry point group 'af3bench')")
    return EXIT_OK


# ---------------------------------------------------------------- af3 bench

def _print_plan(plan) -> None:
    print(f"device: {plan.device.label}" + (f", {len(plan.slots)} slots: {', '.join(s.label for s in plan.slots)}"
                                             if len(plan.slots) > 1 else ""))
    print(f"{len(plan.cases)} case(s)" + (f" ({plan.combinations} --sweep combinations)" if plan.combinations > 1 else ""))
    for c in plan.cases:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(c.case.settings.items()))
        print(f"{c.case_id}: {c.case.plugin} mode={c.case.mode} preset={c.case.preset} seq_len={c.case.seq_len} "
              f"{stopping.describe(c.case)} warmup={c.case.warmup} [{settings}]")
    if plan.until_oom:
        print("until-oom: each setting stops at its first out-of-memory size")
    for name, reason in plan.skipped:
        print(f"skipped {name}: {reason}")


def _choices(args) -> Choices:
    if args.out is not None and not args.out.strip():
        raise UsageError("--out: empty folder name")
    notes = clean_text(args.notes)
    if len(notes) > NOTES_MAX_CHARS:
        raise UsageError(f"--notes: {len(notes)} characters, more than {NOTES_MAX_CHARS}")
    budget = max(args.min_time or 0.0, args.max_time or 0.0)
    timeout = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
    if budget and budget >= timeout:
        raise UsageError(f"--min-time/--max-time {budget:g} s leave no time for set-up and compile under "
                         f"--timeout {timeout:g} s: raise --timeout")
    return Choices(plugins=args.plugins, mode=args.mode, device=args.device, seq_len=args.seq_len,
                   passes=args.passes, warmup=args.warmup, preset=args.preset, sets=args.sets,
                   sweeps=args.sweeps, notes=notes, min_time_s=args.min_time, max_noise=args.max_noise,
                   max_time_s=args.max_time, gpus=args.gpus, jobs=args.jobs,
                   until_oom=args.until_oom, max_cases=args.max_cases)


def _check_in_process(plan) -> None:
    """--in-process runs every case in this process, under this interpreter."""
    plugins = {c.plugin.name: c.plugin for c in plan.cases}
    elsewhere = sorted(f"{name} ({python})" for name, (python, source)
                       in ((name, envs.interpreter(p)) for name, p in plugins.items()) if source != envs.HOST)
    if elsewhere:
        raise UsageError(f"--in-process runs in this interpreter, but these plugins' workers run under another: "
                         f"{', '.join(elsewhere)}; leave out --in-process (or unregister: python -m af3core.envs)")
    engines = sorted(name for name, plugin in plugins.items() if plugin.kind == "engine")
    if len(engines) > 1:
        # Engines' top-level packages can clash in one process (Ligo's source and Protenix's wheel
        # both bring a package named `configs`): the first one imported would serve both.
        raise UsageError(f"--in-process runs one engine per invocation, not {len(engines)} ({', '.join(engines)}): "
                         "their modules would share this process; run them one --plugin at a time")


def cmd_bench(args) -> int:
    choices = _choices(args)
    plan = build_plan(discovery.load(), choices)
    if args.in_process and len(plan.slots) > 1:
        raise UsageError("--in-process runs one case at a time in this process: leave out --jobs/--gpus")
    if args.in_process:
        _check_in_process(plan)
    executor = None
    if args.executor == "ray":
        if args.in_process or len(plan.slots) > 1 or plan.until_oom:
            raise UsageError("--executor ray places the cases itself: leave out --in-process, --jobs, --gpus "
                             "and --until-oom")
        if not args.dry_run:
            from af3core.rayexec import RayExecutor

            executor = RayExecutor(args.ray_address, args.retries, plan)
    elif args.ray_address is not None or args.retries:
        raise UsageError("--ray-address and --retries apply to --executor ray")
    if args.dry_run:
        _print_plan(plan)
        return EXIT_FAILED if plan.faulty else EXIT_OK

    from af3core import outdir
    from af3core.live import make_view
    from af3core.run import run_plan

    folder = outdir.claim(args.out, args.force)
    view = make_view(plan, force_plain=args.plain)
    command_line = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    if args.in_process and args.timeout is not None:
        print("af3: --timeout does not apply with --in-process (no worker to stop)", file=sys.stderr)
    timeout = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
    outcome = run_plan(plan, folder, timeout, view, command_line, in_process=args.in_process, executor=executor)
    out_dir = folder.path
    seq_lens = {r.planned.case.seq_len for r in outcome.records if r.ok_times}
    if not args.no_plot and len(seq_lens) > 1 and not outcome.write_error and outcome.stopped_by is None:
        _plot(out_dir)
    for group, largest in outcome.largest_fit.items():
        print(f"largest size that fits: {largest if largest is not None else 'none'}  ({group})")
    for group, largest in outcome.fitted_no_oom.items():
        print(f"largest size that ran: {largest}, a lower bound (no size ran out of memory)  ({group})")
    print(f"results: {out_dir}")
    if outcome.write_error:
        print(f"af3: error: {outcome.write_error}; the rows written before it are kept", file=sys.stderr)
        return EXIT_FAILED
    if outcome.stopped_by is not None:
        print(f"stopped: the summary covers the {len(outcome.records)} case(s) that ran", file=sys.stderr)
        return 128 + outcome.stopped_by
    if plan.faulty:
        print(f"left out because a plugin hook failed: {', '.join(plan.faulty)}", file=sys.stderr)
    if outcome.failed:
        print(f"{len(outcome.failed)} of {len(outcome.records)} case(s) failed", file=sys.stderr)
    return EXIT_FAILED if outcome.failed or plan.faulty else EXIT_OK


def _plot(out_dir: Path) -> None:
    from af3core.plot import plot_run

    try:
        for path in plot_run(out_dir):
            print(f"plot: {path}")
    except Exception as exc:  # noqa: BLE001 - plots are a convenience; the results are written
        print(f"af3: plots not written ({type(exc).__name__}: {exc}); `af3 plot {out_dir}` retries",
              file=sys.stderr)


def cmd_plot(args) -> int:
    from af3core.plot import plot_run

    if len(args.runs) > 1 and args.out is None:
        raise UsageError("several runs are plotted together into --out DIR: name it")
    out = args.out or args.runs[0]
    written = plot_run(out, args.runs)
    if not written:
        print(f"{', '.join(map(str, args.runs))}: no successful cases to plot", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(f"plot: {path}")
    return EXIT_OK


def cmd_show(args) -> int:
    from af3core.show import print_show

    return print_show(args.runs, args.markdown, args.figures, args.by_length)


def cmd_report(args) -> int:
    from af3core.show import write_report

    print(f"report: {write_report(args.dir, args.html)}")
    return EXIT_OK


def cmd_compare(args) -> int:
    from af3core.compare import run_compare

    return run_compare(args.runs, args.by, args.threshold, args.markdown, args.csv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        command = args.command or "bench"
        if args.command is None:  # bare `af3`: same as `af3 bench`
            args = build_parser().parse_args(["bench"])
        return {"plugins": cmd_plugins, "bench": cmd_bench, "plot": cmd_plot, "compare": cmd_compare,
                "show": cmd_show, "report": cmd_report}[command](args)
    except UsageError as exc:
        print(f"af3: error: {str(exc).replace(chr(10), ' ')}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `af3 ... | head`: the reader left; nothing more to say
        sys.stdout = None  # no flush of the dead pipe at exit
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
