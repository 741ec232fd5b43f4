import pytest

from af3core.errors import UsageError
from af3core.plan import coerce, parse_seq_lens, parse_set, resolve_device, resolve_settings
from af3core.plugin import ENGINE, Plugin, Setting
from af3core import gpu


@pytest.mark.parametrize("text, expected", [
    ("256", [256]), ("64,128,256", [64, 128, 256]), ("64:256:64", [64, 128, 192, 256]), ("8:8:1", [8]),
])
def test_seq_len_forms(text, expected):
    assert parse_seq_lens(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "64:32:8", "64:128", "64:128:0", "1:2:3:4", "-8", "0", "12.5"])
def test_malformed_seq_len_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_seq_lens(text)


def test_open_range_needs_until_oom():
    with pytest.raises(UsageError, match="until-oom"):
        parse_seq_lens("128::128")
    values = parse_seq_lens("128::128", allow_open=True)
    assert values[:3] == [128, 256, 384] and len(values) > 100


@pytest.mark.parametrize("items", [["novalue"], ["=3"], ["a b=1"]])
def test_malformed_set(items):
    with pytest.raises(UsageError):
        parse_set(items)


def test_values_take_the_type_of_the_default():
    assert coerce("k", "3", 1) == 3
    assert coerce("k", "off", True) is False
    assert coerce("k", "0.5", 1.0) == 0.5
    assert coerce("k", "7", "x") == "7"
    with pytest.raises(UsageError):
        coerce("k", "many", 1)
    with pytest.raises(UsageError):
        coerce("k", "maybe", False)


PLUGIN = Plugin(name="p", kind=ENGINE, runner="x:y",
                settings={"steps": Setting(10), "impl": Setting("a", choices=("a", "b")), "bf16": Setting(True)},
                presets={"small": {"steps": 2}, "real": {"steps": 200, "bf16": False}}, default_preset="small")


def test_settings_precedence_default_then_preset_then_set():
    assert resolve_settings(PLUGIN, None, {}) == ("small", {"steps": 2, "impl": "a", "bf16": True})
    assert resolve_settings(PLUGIN, "real", {})[1] == {"steps": 200, "impl": "a", "bf16": False}
    assert resolve_settings(PLUGIN, "real", {"steps": "7", "impl": "b"})[1]["steps"] == 7


@pytest.mark.parametrize("preset, sets, match", [
    ("huge", {}, "unknown preset"), (None, {"nope": "1"}, "unknown setting"), (None, {"impl": "c"}, "one of"),
])
def test_bad_settings(preset, sets, match):
    with pytest.raises(UsageError, match=match):
        resolve_settings(PLUGIN, preset, sets)


def test_default_preset_per_device_type():
    plugin = Plugin(name="k", kind=ENGINE, runner="x:y", settings={"S": Setting(128)},
                    presets={"smoke": {"S": 4}}, default_preset={"cpu": "smoke"})
    assert resolve_settings(plugin, None, {}, "cpu") == ("smoke", {"S": 4})
    assert resolve_settings(plugin, None, {}, "cuda") == (None, {"S": 128})
    assert resolve_settings(plugin, None, {"S": "9"}, "cpu")[1] == {"S": 9}


def test_plugin_validate_may_accept_extra_keys():
    plugin = Plugin(name="q", kind=ENGINE, runner="x:y", settings={"steps": Setting(1)},
                    validate=lambda s: [] if all(k == "steps" or k.startswith("config.") for k in s)
                    else ["keys must start with config."])
    assert resolve_settings(plugin, None, {"config.depth": "4"})[1]["config.depth"] == 4
    with pytest.raises(UsageError, match="config."):
        resolve_settings(plugin, None, {"depth": "4"})


def test_devices():
    assert resolve_device("cpu").name == "cpu"
    with pytest.raises(UsageError, match="expected auto"):
        resolve_device("tpu")
    if gpu.device_count() == 0:
        assert resolve_device("auto").name == "cpu"
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    else:
        pinned = resolve_device("cuda:0")
        assert pinned.name == "cuda" and pinned.visible_devices is not None
        with pytest.raises(UsageError, match="visible"):
            resolve_device(f"cuda:{gpu.device_count()}")


def test_plugin_without_quick_default_on_a_device_is_left_out_of_bare_runs():
    from af3core.plan import Choices, build_plan
    from af3core.plugins import Registry

    gpu_only = Plugin(name="k", kind=ENGINE, runner="x:y", default_seq_lens={"cuda": (384,)})
    anywhere = Plugin(name="e", kind=ENGINE, runner="x:y")
    registry = Registry({"k": gpu_only, "e": anywhere}, [])
    plan = build_plan(registry, Choices(device="cpu"))
    assert [c.case.plugin for c in plan.cases] == ["e"]
    assert plan.skipped[0][0] == "k" and "--seq-len" in plan.skipped[0][1]
    with pytest.raises(UsageError, match="no default size on cpu"):
        build_plan(registry, Choices(plugins=["k"], device="cpu"))
    named = build_plan(registry, Choices(plugins=["k"], device="cpu", seq_len="16"))
    assert [c.case.seq_len for c in named.cases] == [16]
