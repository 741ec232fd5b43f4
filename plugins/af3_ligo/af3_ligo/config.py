"""Ligo's model configuration, read from the repo's own ``configs/model/alphafold3.yaml``.

Light (PyYAML only): the plugin's ``validate`` uses it on the host. What this module does, and why:
- The yaml is a Hydra node: its ``defaults:`` list (optimizer, scheduler, loss) is training-only
  and dropped; ``${model.x}`` interpolations are resolved against the model node itself, *after*
  overrides, so ``config.c_token=64`` reaches every ``${model.c_token}``.
- PyYAML follows YAML 1.1, which reads ``1e8`` (no dot) as a string; Ligo's ``inf: 1e8`` would
  then reach the model as ``"1e8"`` and ``self.inf * (mask - 1)`` would fail. A float resolver
  that accepts that form fixes it.
- The model reads its config both as attributes (``config.globals.chunk_size``) and as items
  (``config["msa_module"]``), as with Hydra's DictConfig: :class:`AttrDict` gives both.

Overrides use dotted paths into the yaml, written ``config.<path>`` in ``--set``
(``--set config.pairformer_stack.no_blocks=8``); only existing keys can be set, so a typo fails.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

#: ``--set`` keys that address the yaml start with this.
PREFIX = "config."

_INTERP = re.compile(r"^\$\{model\.([A-Za-z0-9_.]+)\}$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e8``, ``-1E-3``... as floats (YAML 1.2 style)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class AttrDict(dict):
    """A dict whose keys are also attributes (what the model expects of Hydra's DictConfig)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo):
        return AttrDict({k: copy.deepcopy(v, memo) for k, v in self.items()})


def parse_value(text: str) -> Any:
    """A ``--set`` value as the yaml would read it: ``64`` int, ``1e8`` float, ``true``, ``null``."""
    return yaml.load(text, Loader=_Loader)


def load_raw(path: Path) -> dict:
    """The yaml as written, minus Hydra's ``defaults`` list; interpolations still unresolved."""
    with open(path) as f:
        raw = yaml.load(f, Loader=_Loader)
    raw.pop("defaults", None)
    return raw


def _lookup(node: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


_UNSET = object()


def check_override(raw: Mapping, key: str, value: Any = _UNSET) -> str | None:
    """Error text when ``key`` (``config.a.b``) names no existing key of the yaml, or when ``value``
    (a ``--set`` string is parsed as yaml) is not of the kind the yaml holds there; else None.

    Kinds: a bool for a bool, an integer for an integer, a number for a float; ``null`` is always
    accepted (``blocks_per_ckpt: null`` turns checkpointing off). Strings in the yaml (its
    ``${model.x}`` interpolations, ``matmul_precision``) take any value.
    """
    if not key.startswith(PREFIX):
        return f"unknown setting {key!r} (yaml keys are set as {PREFIX}<dotted.path>)"
    path = key[len(PREFIX):]
    try:
        current = _lookup(raw, path)
    except KeyError:
        return f"{key!r}: the model yaml has no key {path!r}"
    if isinstance(current, Mapping):
        return f"{key!r} is a section of the yaml, not a value; set one of its keys"
    if value is _UNSET:
        return None
    given = parse_value(value) if isinstance(value, str) else value
    if given is None:
        return None
    if isinstance(current, bool):
        ok, kind = isinstance(given, bool), "true or false"
    elif isinstance(current, int):
        ok, kind = isinstance(given, int) and not isinstance(given, bool), "an integer"
    elif isinstance(current, float):
        ok, kind = isinstance(given, (int, float)) and not isinstance(given, bool), "a number"
    else:
        return None
    if not ok:
        return f"{key}={value!r}: the yaml holds {current!r} there, so it takes {kind} (or null)"
    return None


def apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> dict:
    """A copy of ``raw`` with ``{"config.a.b": value}`` applied (string values parsed as yaml)."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        err = check_override(out, key, value)
        if err:
            raise KeyError(err)
        *parents, leaf = key[len(PREFIX):].split(".")
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = parse_value(value) if isinstance(value, str) else value
    return out


def resolve(raw: Mapping) -> AttrDict:
    """Resolve ``${model.x}`` interpolations (chains included) and wrap nodes in :class:`AttrDict`."""

    def value_of(v: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(v, str):
            m = _INTERP.match(v)
            if m:
                target = m.group(1)
                if target in seen:
                    raise ValueError(f"interpolation cycle: {' -> '.join(seen + (target,))}")
                return value_of(_lookup(raw, target), seen + (target,))
            return v
        if isinstance(v, Mapping):
            return AttrDict({k: value_of(x, seen) for k, x in v.items()})
        if isinstance(v, list):
            return [value_of(x, seen) for x in v]
        return v

    return value_of(raw, ())


def build_config(path: Path, overrides: Mapping[str, Any]) -> AttrDict:
    """The model config: the repo's yaml, ``config.*`` overrides applied, interpolations resolved."""
    return resolve(apply_overrides(load_raw(path), overrides))


def summary(cfg: Mapping) -> dict[str, Any]:
    """The widths and depths that decide the cost of a pass, for the result rows."""
    return {
        "c_token": cfg["c_token"],
        "c_pair": cfg["c_pair"],
        "c_atom": cfg["c_atom"],
        "c_atompair": cfg["c_atompair"],
        "msa_blocks": cfg["msa_module"]["no_blocks"],
        "c_msa": cfg["msa_module"]["c_msa"],
        "pairformer_blocks": cfg["pairformer_stack"]["no_blocks"],
        "diffusion_transformer_blocks": cfg["diffusion_module"]["token_transformer_blocks"],
        "atom_encoder_blocks": cfg["diffusion_module"]["atom_encoder_blocks"],
        "atom_decoder_blocks": cfg["diffusion_module"]["atom_decoder_blocks"],
        "chunk_size": cfg["globals"]["chunk_size"],
        "blocks_per_ckpt": cfg["blocks_per_ckpt"],
        "use_deepspeed_evo_attention": cfg["globals"]["use_deepspeed_evo_attention"],
        "matmul_precision": cfg["globals"]["matmul_precision"],
    }
