"""Every plugin's GPU suite (plugins/<distribution>/suite.txt), and the engines' common one
(scripts/engines_suite.txt), is a list of valid `af3 bench` cases: each "NAME: ARGS" line parses,
names its own plugin (the engines' suite: an engine, and the name starts with its short name) on a
CUDA device, and its preset, settings (checked by the plugin's own validate for CUDA) and sizes are
accepted; names are unique; every engine's suite has an --in-process twin of a harness line (the
harness-vs-bare-loop cross-check)."""
import importlib
import shlex
from pathlib import Path

import pytest

from af3core import ENGINE
from af3core.cli import build_parser
from af3core.errors import UsageError
from af3core.plan import parse_seq_lens, parse_set, resolve_settings

ROOT = Path(__file__).resolve().parent.parent
SUITES = sorted(ROOT.glob("plugins/*/suite.txt"))
#: What a line may be refused for on this machine and not on a GPU machine: an anchor that is not
#: installed, an engine source that is not here.
MACHINE_SPECIFIC = ("pip install", "was not found")


def _cases(suite: Path) -> dict[str, list[str]]:
    cases = {}
    for line in suite.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        assert sep and name.strip(), f"{suite}: {line!r} is not NAME: ARGS"
        assert name.strip() not in cases, f"{suite}: case names must be unique: {name}"
        cases[name.strip()] = shlex.split(rest)
    return cases


def _plugins(distribution: str) -> dict:
    found = []
    importlib.import_module(f"{distribution}.plugin").register_plugins(register=found.append)
    return {p.name: p for p in found}


def _check_case(name: str, words: list[str], plugins: dict):
    """The case's plugin, after checking the line as the suite runner will run it."""
    assert not {"--out", "--force", "--plain"} & set(words), f"{name}: the suite runner adds those"
    args = build_parser().parse_args(["bench", *words])
    assert len(args.plugins) == 1 and args.plugins[0] in plugins, name
    assert args.device in ("cuda", "auto"), name
    plugin = plugins[args.plugins[0]]
    assert (args.mode or plugin.default_mode) in plugin.modes, name
    try:
        resolve_settings(plugin, args.preset, parse_set(args.sets), "cuda")
    except UsageError as exc:
        if not any(text in str(exc) for text in MACHINE_SPECIFIC):
            raise AssertionError(f"{name}: {exc}") from None
    sizes = parse_seq_lens(args.seq_len, args.until_oom)
    for n in sizes[:1] if args.until_oom else sizes:  # a sweep ends where the plugin's sizes end
        assert plugin.check_seq_len is None or plugin.check_seq_len(n) is None, (name, n)
    return plugin


@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.parent.name)
def test_suite_lines_are_valid_cuda_cases(suite):
    plugins = _plugins(suite.parent.name)
    cases = _cases(suite)
    assert cases, f"{suite} lists no case"
    for name, words in cases.items():
        _check_case(name, words, plugins)
    if any(p.kind == ENGINE for p in plugins.values()):
        harness = {tuple(words) for words in cases.values() if "--in-process" not in words}
        in_process = [tuple(w for w in words if w != "--in-process") for words in cases.values()
                      if "--in-process" in words]
        assert in_process and all(words in harness for words in in_process), "no --in-process twin"


#: the engines' short names in scripts/engines_suite.txt (its calls filter on them)
SHORT = {"deepmind": "dm", "openfold3": "of3", "ligo": "ligo", "boltz": "boltz", "protenix": "px"}


def test_the_engines_suite_is_valid_and_named_by_engine():
    plugins = {}
    for suite in SUITES:
        plugins.update(_plugins(suite.parent.name))
    cases = _cases(ROOT / "scripts" / "engines_suite.txt")
    seen = set()
    for name, words in cases.items():
        plugin = _check_case(name, words, plugins)
        assert plugin.kind == ENGINE and name.startswith(SHORT[plugin.name] + "-"), name
        seen.add(plugin.name)
    assert seen == set(SHORT)  # every engine of the table
