"""From command-line choices to a list of cases: seq-len and --set parsing, device resolution,
per-plugin settings merged as Setting defaults <- preset <- --set."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from af3core import gpu
from af3core.errors import UsageError
from af3core.plugin import Plugin
from af3core.plugins import Registry
from af3core.runner import Case

#: An open-ended range ("128::128") grows for at most this many steps (only with --until-oom).
OPEN_RANGE_STEPS = 1000

_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


# ---------------------------------------------------------------- parsing

def parse_seq_lens(text: str, allow_open: bool = False) -> list[int]:
    """``256``, ``64,128,256`` or an inclusive range ``64:512:64`` (``START::STEP`` with --until-oom)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            start_i, step_i = int(start), int(step)
            if stop == "":
                if not allow_open:
                    raise UsageError(f"--seq-len {text!r}: an open range needs --until-oom")
                stop_i = start_i + step_i * OPEN_RANGE_STEPS
            else:
                stop_i = int(stop)
            if step_i <= 0 or stop_i < start_i:
                raise ValueError
            values = list(range(start_i, stop_i + 1, step_i))
        else:
            values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise UsageError(f"--seq-len {text!r}: expected a number, a list like 64,128,256 "
                         "or a range START:STOP:STEP like 64:512:64") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--seq-len {text!r}: sequence lengths must be positive")
    return values


def parse_set(items: Sequence[str]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w.\-]*", key):
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        raw[key] = value.strip()
    return raw


def coerce(key: str, raw: str, default: Any) -> Any:
    """Parse a --set value to the type of the setting's default (or guess when unknown)."""
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
            return float(raw)
        except ValueError:
            raise UsageError(f"--set {key}={raw}: expected a number") from None
    if default is None:  # undeclared key: best guess
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        for kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                pass
    return raw


# ---------------------------------------------------------------- device

@dataclass(frozen=True)
class Device:
    requested: str  # what the user asked for, e.g. "auto" or "cuda:1"
    name: str  # what the worker uses: "cpu", "cuda", "mps"
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES pin for cuda:N

    @property
    def type(self) -> str:
        return self.name.split(":")[0]

    @property
    def label(self) -> str:
        return self.name if self.visible_devices is None else f"cuda:{self.visible_devices}"

    @property
    def gpu_name(self) -> str | None:
        """NVML's name for the GPU the worker uses (NVML counts in PCI order; on hosts of mixed GPUs
        set CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA counts the same way)."""
        if self.type != "cuda":
            return None
        pinned = self.visible_devices or (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
        return gpu.device_name(int(pinned)) if pinned.isdigit() else gpu.device_name(0)


def _is_apple_silicon() -> bool:
    return sys.platform == "darwin" and os.uname().machine == "arm64"


def resolve_device(text: str) -> Device:
    text = text.strip().lower()
    count = gpu.device_count()
    if text == "auto":
        if count:
            return Device(text, "cuda")
        return Device(text, "mps" if _is_apple_silicon() else "cpu")
    if text == "cpu":
        return Device(text, "cpu")
    if text == "mps":
        if not _is_apple_silicon():
            raise UsageError("--device mps: Apple-silicon GPUs only (this machine is not one)")
        return Device(text, "mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise UsageError(f"--device {text!r}: expected auto, cpu, cuda, cuda:N or mps")
    if not count:
        raise UsageError(f"--device {text}: no CUDA GPU is visible on this machine (NVML found none)")
    if match.group(1) is None:
        return Device(text, "cuda")
    index = int(match.group(1))
    if index >= count:
        raise UsageError(f"--device {text}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    pinned = visible.split(",")[index].strip() if visible else str(index)
    return Device(text, "cuda", pinned)


# ---------------------------------------------------------------- the plan

@dataclass
class PlannedCase:
    plugin: Plugin
    case: Case
    case_id: str
    group: str  # cases differing only in seq_len share a group (the --until-oom unit)
    env: dict[str, str] = field(default_factory=dict)
    gpu_name: str | None = None


@dataclass
class Plan:
    cases: list[PlannedCase]
    skipped: list[tuple[str, str]]  # (plugin, reason)
    device: Device
    until_oom: bool = False


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
    notes: str = ""
    until_oom: bool = False


def resolve_settings(plugin: Plugin, preset: str | None, raw: Mapping[str, str],
                     device_type: str = "cpu") -> tuple[str | None, dict[str, Any]]:
    """Setting defaults, then the preset's values, then --set. Raises UsageError naming the problem."""
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
    unknown = []
    for key, value in raw.items():
        declared = plugin.settings.get(key)
        if declared is None and plugin.validate is None:
            unknown.append(key)
            continue
        settings[key] = coerce(key, value, declared.default if declared else settings.get(key))
        if declared and declared.choices is not None and settings[key] not in declared.choices:
            choices = ", ".join(map(str, declared.choices))
            raise UsageError(f"plugin {plugin.name}: --set {key}={value}: expected one of {choices}")
    if unknown:
        known = ", ".join(sorted(plugin.settings)) or "none"
        raise UsageError(f"plugin {plugin.name}: unknown setting(s) {', '.join(unknown)} (settings: {known})")
    if plugin.validate is not None:
        problems = plugin.validate(settings)
        if problems:
            raise UsageError(f"plugin {plugin.name}: " + "; ".join(problems))
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


def build_plan(registry: Registry, choices: Choices) -> Plan:
    device = resolve_device(choices.device)
    explicit = [p for p in choices.plugins if p != "all"]
    names = explicit or sorted(registry.plugins)
    unknown = [n for n in explicit if n not in registry.plugins]
    if unknown:
        broken = {b.name: b for b in registry.broken}
        if unknown[0] in broken:
            raise UsageError(f"plugin {unknown[0]!r} failed to load: {broken[unknown[0]].error}")
        known = ", ".join(sorted(registry.plugins)) or "none installed"
        raise UsageError(f"unknown plugin {unknown[0]!r} (plugins: {known})")
    raw_sets = parse_set(choices.sets)
    fixed_seq_lens = parse_seq_lens(choices.seq_len, choices.until_oom) if choices.seq_len else None
    if choices.passes is not None and choices.passes < 1:
        raise UsageError("--passes must be at least 1")
    if choices.warmup is not None and choices.warmup < 0:
        raise UsageError("--warmup must be 0 or more")

    cases: list[PlannedCase] = []
    skipped: list[tuple[str, str]] = []
    availability = registry.availability()
    for name in names:
        plugin = registry.plugins[name]
        try:
            cases.extend(_plan_plugin(plugin, availability[name], choices, device, raw_sets, fixed_seq_lens,
                                      start_index=len(cases)))
        except UsageError as exc:
            if explicit:
                raise
            skipped.append((name, str(exc)))
    for b in registry.broken:
        if not explicit:
            skipped.append((b.name, f"broken: {b.error}"))
    if not cases:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped) or "no plugins installed"
        raise UsageError(f"nothing to run ({reasons})")
    return Plan(cases, skipped, device, choices.until_oom)


def _plan_plugin(plugin: Plugin, available, choices: Choices, device: Device, raw_sets, fixed_seq_lens,
                 start_index: int) -> list[PlannedCase]:
    if not available.ok:
        fix = f"; {available.fix}" if available.fix else ""
        raise UsageError(f"plugin {plugin.name} cannot run here: {available.reason}{fix}")
    if device.type not in plugin.devices:
        raise UsageError(f"plugin {plugin.name} does not run on {device.type} (devices: {', '.join(plugin.devices)})")
    mode = choices.mode or plugin.default_mode
    if mode not in plugin.modes:
        raise UsageError(f"plugin {plugin.name}: unknown mode {mode!r} (modes: {', '.join(plugin.modes)})")
    preset, settings = resolve_settings(plugin, choices.preset, raw_sets, device.type)
    seq_lens = fixed_seq_lens or list(plugin.default_seq_lens.get(device.type) or ())
    if not seq_lens:
        # No quick default for this device (e.g. Triton kernels on a CPU, where they run in
        # Triton's slow interpreter): bare runs leave the plugin out; a named run needs --seq-len.
        raise UsageError(f"plugin {plugin.name} has no default size on {device.type}: give --seq-len")
    if plugin.check_seq_len is not None:
        for position, n in enumerate(seq_lens):
            problem = plugin.check_seq_len(n)
            if problem and choices.until_oom and position > 0:
                seq_lens = seq_lens[:position]  # a sweep ends where the plugin's sizes end
                break
            if problem:
                raise UsageError(f"plugin {plugin.name}: --seq-len {n}: {problem}")
    passes = choices.passes or plugin.default_passes
    warmup = plugin.default_warmup if choices.warmup is None else choices.warmup
    env = worker_env(plugin, device)
    group = f"{plugin.name}/{mode}/{preset}/{json.dumps(settings, sort_keys=True, default=str)}"
    planned = []
    for n in seq_lens:
        case = Case(plugin=plugin.name, mode=mode, seq_len=n, device=device.name, passes=passes, warmup=warmup,
                    preset=preset, settings=dict(settings), notes=choices.notes)
        planned.append(PlannedCase(plugin, case, _case_id(start_index + len(planned), plugin.name, mode, n, preset,
                                                          settings), group, env, device.gpu_name))
    return planned
