"""From command-line choices to a list of cases: --seq-len and --set parsing, per-plugin settings
(Setting defaults <- preset <- --set), plan-time validation through each plugin, and limits.

Everything a user can get wrong is refused here, before any worker starts (UsageError: one line,
exit 2). A plugin hook that raises is reported against its plugin, and the other plugins still run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from af3core import stopping
from af3core.devices import Device, resolve_device
from af3core.discovery import Registry
from af3core.errors import UsageError
from af3core.plugin import Plugin
from af3core.runner import Case
from af3core.slots import Slot, make_slots

#: An open-ended range ("128::128") grows for at most this many steps, and never past MAX_SEQ_LEN
#: (only with --until-oom).
OPEN_RANGE_STEPS = 1000
#: No AlphaFold-class case comes near this; larger values are typing mistakes that would start a
#: worker trying to allocate terabytes.
MAX_SEQ_LEN = 1_000_000
#: Values one --seq-len may expand to (checked before the list is built).
MAX_SEQ_LENS = 10_000
#: Cases in one plan unless --max-cases says otherwise (an --until-oom sweep stops by itself).
DEFAULT_MAX_CASES = 1000

_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
_KEY = r"[A-Za-z_][\w.\-]*"


class _CannotRunHere(Exception):
    """The plugin cannot run this choice here (unavailable, other device, mode or size): a bare run
    skips it and says why; a run that named it stops with a usage error. Mistakes in --set are
    usage errors either way."""


class PluginFault(Exception):
    """One of a plugin's own hooks raised: the plugin is reported and left out; the others run."""


# ---------------------------------------------------------------- parsing

def parse_seq_lens(text: str, allow_open: bool = False) -> list[int]:
    """``256``, ``64,128,256`` or an inclusive range ``64:512:64`` (``START::STEP`` with --until-oom)."""
    text = text.strip()
    usage = (f"--seq-len {text!r}: expected a number, a list like 64,128,256 or a range START:STOP:STEP "
             "like 64:512:64")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, step = int(parts[0]), parts[1], int(parts[2])
            if stop == "":
                if not allow_open:
                    raise UsageError(f"--seq-len {text!r}: an open range needs --until-oom")
                stop_i = min(start + step * OPEN_RANGE_STEPS, MAX_SEQ_LEN)
            else:
                stop_i = int(stop)
            if step <= 0 or stop_i < start:
                raise ValueError
            count = (stop_i - start) // step + 1
            if count > MAX_SEQ_LENS:
                raise UsageError(f"--seq-len {text!r}: {count} sizes, more than {MAX_SEQ_LENS}: use a larger step")
            values = list(range(start, stop_i + 1, step))
        else:
            items = text.split(",")
            if len(items) > MAX_SEQ_LENS:
                raise UsageError(f"--seq-len: more than {MAX_SEQ_LENS} sizes")
            values = [int(v) for v in items if v.strip() != ""]
    except ValueError:
        raise UsageError(usage) from None
    if not values:
        raise UsageError(usage)
    if any(v <= 0 for v in values):
        raise UsageError(f"--seq-len {text!r}: sequence lengths must be positive")
    if max(values) > MAX_SEQ_LEN:
        raise UsageError(f"--seq-len {text!r}: {max(values)} is more than the largest size af3-bench runs "
                         f"({MAX_SEQ_LEN:,})")
    return values


@dataclass(frozen=True)
class SetItem:
    """One ``--set [PLUGIN:]KEY=VALUE``."""

    scope: str | None  # a plugin name, or None for "every selected plugin that has KEY"
    key: str
    raw: str

    @property
    def text(self) -> str:
        return f"{self.scope + ':' if self.scope else ''}{self.key}={self.raw}"


def parse_set(items: Sequence[str]) -> list[SetItem]:
    parsed: dict[tuple[str | None, str], SetItem] = {}
    for item in items:
        left, sep, value = item.partition("=")
        match = re.fullmatch(rf"\s*(?:([\w\-]+):)?({_KEY})\s*", left)
        if not sep or not match:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE or PLUGIN:KEY=VALUE")
        scope, key = match.groups()
        parsed[(scope, key)] = SetItem(scope, key, value.strip())  # a later --set of the same key wins
    return list(parsed.values())


def parse_sweeps(items: Sequence[str], sets: Sequence[SetItem]) -> list[list[SetItem]]:
    """``--sweep [PLUGIN:]KEY=V1,V2,...`` items -> one list of SetItems per combination (their
    product, in the order given: the last sweep varies fastest); ``[[]]`` without sweeps."""
    axes: list[list[SetItem]] = []
    seen: set[tuple[str | None, str]] = set()
    fixed = {(item.scope, item.key) for item in sets}
    for item in items:
        left, sep, values = item.partition("=")
        match = re.fullmatch(rf"\s*(?:([\w\-]+):)?({_KEY})\s*", left)
        if not sep or not match:
            raise UsageError(f"--sweep {item!r}: expected KEY=V1,V2,... or PLUGIN:KEY=V1,V2,...")
        scope, key = match.groups()
        raws = [v.strip() for v in values.split(",")]
        if not values.strip() or any(v == "" for v in raws):
            raise UsageError(f"--sweep {item!r}: expected a comma-separated list of values, none empty")
        if (scope, key) in seen:
            raise UsageError(f"--sweep {item!r}: {key} is swept twice; give all its values in one --sweep")
        if (scope, key) in fixed:
            raise UsageError(f"--sweep {item!r}: {key} is also fixed by --set; drop one of them")
        seen.add((scope, key))
        axes.append([SetItem(scope, key, raw) for raw in dict.fromkeys(raws)])
    return [list(combo) for combo in itertools.product(*axes)]


def coerce(key: str, raw: str, default: Any) -> Any:
    """Parse a --set value to the type of the setting's default (or guess when there is none)."""
    if isinstance(default, bool):
        if raw.lower() not in _BOOLS:
            raise UsageError(f"--set {key}={raw}: expected true or false")
        return _BOOLS[raw.lower()]
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected an integer") from None
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"--set {key}={raw}: expected a finite number")
        return value
    if default is None:  # a key under one of the plugin's setting_prefixes: best guess
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        for kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                pass
    if raw == "":
        raise UsageError(f"--set {key}=: empty value")
    return raw


def plugin_has(plugin: Plugin, key: str) -> bool:
    return key in plugin.settings or any(key.startswith(p) for p in plugin.setting_prefixes)


def call_hook(plugin: Plugin, hook: str, fn: Callable, *args):
    """A plugin's own code, run so that its exceptions are its plugin's fault and nobody else's."""
    try:
        return fn(*args)
    except UsageError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: a plugin cannot end the command
        raise PluginFault(f"plugin {plugin.name}: its {hook} raised {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- the plan

@dataclass
class PlannedCase:
    plugin: Plugin
    case: Case
    case_id: str
    group: str  # cases differing only in seq_len share a group (the --until-oom unit)
    env: dict[str, str] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)  # gpu_name, gpu_index, gpu_uuid (NVML's), or empty


@dataclass
class Plan:
    cases: list[PlannedCase]
    skipped: list[tuple[str, str]]  # (plugin, reason)
    device: Device
    until_oom: bool = False
    faulty: list[str] = field(default_factory=list)  # named plugins left out because a hook raised
    source_versions: dict[str, str | None] = field(default_factory=dict)
    combinations: int = 1  # --sweep combinations planned (1 without --sweep)
    slots: list[Slot] = field(default_factory=lambda: [Slot("0")])  # where cases run at once (af3core.slots)


@dataclass
class Choices:
    """What the user chose on the command line (None = the plugin's default)."""

    plugins: list[str] = field(default_factory=list)  # empty or ["all"] = every available plugin
    mode: str | None = None
    device: str = "auto"
    seq_len: str | None = None
    passes: int | None = None
    warmup: int | None = None
    preset: str | None = None
    sets: list[str] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)  # --sweep [PLUGIN:]KEY=V1,V2,...
    notes: str = ""
    until_oom: bool = False
    max_cases: int = DEFAULT_MAX_CASES
    min_time_s: float | None = None  # --min-time (seconds)
    max_noise: float | None = None  # --max-noise, a fraction (0.01 for 1%)
    max_time_s: float | None = None  # --max-time (seconds; only with --max-noise)
    gpus: str | None = None  # --gpus: all, or NVML indices (one slot each)
    jobs: int | None = None  # --jobs: cases at once on the selected device


def resolve_settings(plugin: Plugin, preset: str | None, sets: Sequence[SetItem],
                     device_type: str = "cpu") -> tuple[str | None, dict[str, Any]]:
    """Setting defaults, then the preset's values, then --set; then the plugin's own validation for
    this device type. ``sets`` are the items meant for this plugin. Raises UsageError."""
    if preset is None:
        preset = plugin.default_preset
        if isinstance(preset, Mapping):  # a default preset per device type
            preset = preset.get(device_type)
    settings: dict[str, Any] = {key: s.default for key, s in plugin.settings.items()}
    if preset is not None:
        if preset not in plugin.presets:
            known = ", ".join(plugin.presets) or "none"
            raise UsageError(f"plugin {plugin.name}: unknown preset {preset!r} (presets: {known})")
        settings.update(plugin.presets[preset])
    unknown = [item.key for item in sets if not plugin_has(plugin, item.key)]
    if unknown:
        known = ", ".join(sorted(plugin.settings)) or "none"
        raise UsageError(f"plugin {plugin.name}: unknown setting(s) {', '.join(unknown)} (settings: {known})")
    for item in sets:
        declared = plugin.settings.get(item.key)
        value = coerce(item.key, item.raw, declared.default if declared else settings.get(item.key))
        if declared and declared.choices is not None and value not in declared.choices:
            choices = ", ".join(map(str, declared.choices))
            raise UsageError(f"plugin {plugin.name}: --set {item.key}={item.raw}: expected one of {choices}")
        settings[item.key] = value
    if plugin.validate is not None:
        problems = call_hook(plugin, "validate", plugin.validate, dict(settings), device_type)
        if problems:
            raise UsageError(f"plugin {plugin.name}: " + "; ".join(map(str, problems)))
    return preset, settings


def _case_id(index: int, plugin: str, mode: str, seq_len: int, preset: str | None, settings: dict) -> str:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{index:03d}-{plugin}-{mode}-{preset or 'nopreset'}-L{seq_len}-{digest}"


def worker_env(plugin: Plugin, device: Device) -> dict[str, str]:
    """The plugin's defaults, overridden by the user's own environment, plus the device pin."""
    env = {**plugin.env, **os.environ, "PYTHONUNBUFFERED": "1"}
    if device.visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = device.visible_devices
    return env


def _sets_by_plugin(names: list[str], registry: Registry, items: list[SetItem]) -> dict[str, list[SetItem]]:
    """Each --set goes to the plugins it names or, unscoped, to the selected plugins that have it."""
    by_plugin: dict[str, list[SetItem]] = {n: [] for n in names}
    for item in items:
        if item.scope is not None:
            if item.scope not in by_plugin:
                raise UsageError(f"--set {item.text}: plugin {item.scope!r} is not selected "
                                 f"(selected: {', '.join(names)})")
            if not plugin_has(registry.plugins[item.scope], item.key):
                plugin = registry.plugins[item.scope]
                raise UsageError(f"--set {item.text}: unknown setting {item.key!r} of plugin {item.scope} "
                                 f"(settings: {', '.join(sorted(plugin.settings)) or 'none'})")
            by_plugin[item.scope].append(item)
            continue
        owners = [n for n in names if plugin_has(registry.plugins[n], item.key)]
        if not owners and len(names) == 1:
            by_plugin[names[0]].append(item)  # the plugin's own error names its settings
        elif not owners:
            raise UsageError(f"--set {item.text}: no selected plugin has a setting {item.key!r} "
                             f"(selected: {', '.join(names)}; `af3 plugins --json` lists the settings)")
        for n in owners:
            by_plugin[n].append(item)
    return by_plugin


def _with_stopping(choices: Choices) -> Choices:
    """--min-time, --max-noise and --max-time checked together (af3core.stopping); --max-time's
    default filled in."""
    max_time = choices.max_time_s
    if max_time is not None and choices.max_noise is None:
        raise UsageError("--max-time bounds --max-noise: give --max-noise too (or --min-time alone)")
    if choices.max_noise is not None and max_time is None:
        max_time = max(stopping.DEFAULT_MAX_TIME_S, choices.min_time_s or 0.0)
    if choices.min_time_s and max_time is not None and choices.min_time_s > max_time:
        raise UsageError(f"--min-time {choices.min_time_s:g} is more than --max-time {max_time:g}")
    return replace(choices, max_time_s=max_time)


def build_plan(registry: Registry, choices: Choices) -> Plan:
    slots = make_slots(choices.gpus, choices.jobs)
    if choices.gpus is not None and choices.device not in ("auto", "cuda"):
        raise UsageError(f"--gpus picks the GPUs of the run: leave out --device {choices.device} (or give cuda)")
    if len(slots) > 1 and choices.until_oom:
        raise UsageError("--until-oom grows the sizes one after another: it runs one case at a time "
                         "(leave out --jobs/--gpus)")
    device = resolve_device("cuda" if choices.gpus is not None else choices.device)
    explicit = list(dict.fromkeys(p for p in choices.plugins if p != "all"))
    for name in explicit:
        registry.require(name)  # UsageError for unknown, broken and conflicting names
    names = explicit or sorted(registry.plugins)
    fixed_seq_lens = None
    if choices.seq_len is not None:
        fixed_seq_lens = parse_seq_lens(choices.seq_len, choices.until_oom)
    if choices.passes is not None and choices.passes < 1:
        raise UsageError("--passes must be at least 1")
    if choices.warmup is not None and choices.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    if choices.max_cases < 1:
        raise UsageError("--max-cases must be at least 1")
    choices = _with_stopping(choices)

    availability = registry.availability(names)
    fixed_sets = parse_set(choices.sets)
    combos = parse_sweeps(choices.sweeps, fixed_sets)
    if len(combos) > choices.max_cases and not choices.until_oom:
        raise UsageError(f"--sweep makes {len(combos)} combinations, more than --max-cases {choices.max_cases}")
    cases: list[PlannedCase] = []
    skipped: list[tuple[str, str]] = []
    faulty: list[str] = []
    planned_keys: set[tuple] = set()
    for combo in combos:
        sets = _sets_by_plugin(names, registry, [*fixed_sets, *combo]) if names else {}
        for name in names:
            if name in faulty or any(n == name for n, _ in skipped):
                continue
            plugin = registry.plugins[name]
            try:
                new = _plan_plugin(plugin, availability[name], choices, device, sets[name], fixed_seq_lens,
                                   start_index=len(cases), explicit_plugin=bool(explicit))
            except PluginFault as exc:
                skipped.append((name, str(exc)))
                if explicit:
                    faulty.append(name)
                continue
            except _CannotRunHere as exc:  # a bare run goes on without this plugin
                if explicit:
                    raise UsageError(str(exc)) from None
                skipped.append((name, str(exc)))
                continue
            # a swept key this plugin lacks would repeat its cases: keep each case once
            for pc in new:
                key = (pc.group, pc.case.seq_len)
                if key not in planned_keys:
                    planned_keys.add(key)
                    pc.case_id = _case_id(len(cases), name, pc.case.mode, pc.case.seq_len, pc.case.preset,
                                          pc.case.settings)
                    cases.append(pc)
    if not explicit:
        skipped += [(b.name, f"broken: {b.error}") for b in registry.broken]
        skipped += [(name, f"conflict: {registry.conflict_text(name)}") for name in registry.conflicts]
    if not cases:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped) or "no plugins installed"
        raise UsageError(f"nothing to run ({reasons})")
    if len(cases) > choices.max_cases and not choices.until_oom:
        raise UsageError(f"the plan has {len(cases)} cases, more than --max-cases {choices.max_cases}: "
                         "narrow --seq-len or --plugin, or raise --max-cases")
    versions = {name: availability[name].source_version for name in names}
    return Plan(cases, skipped, device, choices.until_oom, faulty, versions, len(combos), slots)


def _plan_plugin(plugin: Plugin, available, choices: Choices, device: Device, sets: list[SetItem],
                 fixed_seq_lens, start_index: int, explicit_plugin: bool) -> list[PlannedCase]:
    if not available.ok:
        fix = f"; {available.fix}" if available.fix else ""
        raise _CannotRunHere(f"plugin {plugin.name} cannot run here: {available.reason}{fix}")
    if device.type not in plugin.devices:
        raise _CannotRunHere(f"plugin {plugin.name} does not run on {device.type} "
                             f"(devices: {', '.join(plugin.devices)})")
    mode = choices.mode or plugin.default_mode
    if mode not in plugin.modes:
        raise _CannotRunHere(f"plugin {plugin.name}: unknown mode {mode!r} (modes: {', '.join(plugin.modes)})")
    if choices.preset is not None and choices.preset not in plugin.presets and not explicit_plugin:
        raise _CannotRunHere(f"plugin {plugin.name} has no preset {choices.preset!r}")
    preset, settings = resolve_settings(plugin, choices.preset, sets, device.type)
    seq_lens = fixed_seq_lens or list(plugin.default_seq_lens.get(device.type) or ())
    if not seq_lens:
        # No quick default for this device (e.g. Triton kernels on a CPU, where they run in
        # Triton's slow interpreter): bare runs leave the plugin out; a named run needs --seq-len.
        raise _CannotRunHere(f"plugin {plugin.name} has no default size on {device.type}: give --seq-len")
    if plugin.check_seq_len is not None:
        for position, n in enumerate(seq_lens):
            problem = call_hook(plugin, "check_seq_len", plugin.check_seq_len, n)
            if problem and choices.until_oom and position > 0:
                seq_lens = seq_lens[:position]  # a sweep ends where the plugin's sizes end
                break
            if problem:
                raise _CannotRunHere(f"plugin {plugin.name}: --seq-len {n}: {problem}")
    passes = choices.passes or plugin.default_passes
    warmup = plugin.default_warmup if choices.warmup is None else choices.warmup
    env = worker_env(plugin, device)
    gpu = {"gpu_name": device.gpu_name, "gpu_index": device.gpu_index, "gpu_uuid": device.gpu_uuid}
    group = f"{plugin.name}/{mode}/{preset}/{json.dumps(settings, sort_keys=True, default=str)}"
    planned = []
    for n in seq_lens:
        case = Case(plugin=plugin.name, mode=mode, seq_len=n, device=device.name, passes=passes, warmup=warmup,
                    preset=preset, settings=dict(settings), notes=choices.notes,
                    min_time_s=choices.min_time_s or 0.0, max_noise=choices.max_noise, max_time_s=choices.max_time_s)
        case_id = _case_id(start_index + len(planned), plugin.name, mode, n, preset, settings)
        planned.append(PlannedCase(plugin, case, case_id, group, env, gpu))
    return planned
