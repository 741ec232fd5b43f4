import pytest

from af3core.errors import UsageError
from af3core import devices
from af3core.devices import resolve_device
from af3core.discovery import Registry
from af3core.plan import (MAX_SEQ_LEN, Choices, SetItem, build_plan, coerce, parse_seq_lens, parse_set,
                          resolve_settings)
from af3core.plugin import ENGINE, Plugin, Setting


def sets(**values):
    return [SetItem(None, k, v) for k, v in values.items()]


@pytest.mark.parametrize("text, expected", [
    ("256", [256]), ("64,128,256", [64, 128, 256]), ("64:256:64", [64, 128, 192, 256]), ("8:8:1", [8]),
])
def test_seq_len_forms(text, expected):
    assert parse_seq_lens(text) == expected


@pytest.mark.parametrize("text", ["", " ", ",", "abc", "64:32:8", "64:128", "64:128:0", "1:2:3:4", "-8", "0", "12.5",
                                  "1:100000000:1", str(MAX_SEQ_LEN + 1)])
def test_malformed_seq_len_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_seq_lens(text)


def test_open_range_needs_until_oom():
    with pytest.raises(UsageError, match="until-oom"):
        parse_seq_lens("128::128")
    values = parse_seq_lens("128::128", allow_open=True)
    assert values[:3] == [128, 256, 384] and len(values) > 100
    assert max(parse_seq_lens("4096::4096", allow_open=True)) <= MAX_SEQ_LEN  # open ranges stop at the cap


@pytest.mark.parametrize("items", [["novalue"], ["=3"], ["a b=1"], ["p:=1"], [":k=1"]])
def test_malformed_set(items):
    with pytest.raises(UsageError):
        parse_set(items)


def test_set_scopes_and_values_with_colons():
    assert parse_set(["kernels:S=8", "spec=2048:none,none:1024", "S=4"]) == [
        SetItem("kernels", "S", "8"), SetItem(None, "spec", "2048:none,none:1024"), SetItem(None, "S", "4")]


def test_values_take_the_type_of_the_default():
    assert coerce("k", "3", 1) == 3
    assert coerce("k", "off", True) is False
    assert coerce("k", "0.5", 1.0) == 0.5
    assert coerce("k", "7", "x") == "7"
    with pytest.raises(UsageError):
        coerce("k", "many", 1)
    with pytest.raises(UsageError):
        coerce("k", "maybe", False)
    with pytest.raises(UsageError, match="finite"):
        coerce("k", "nan", 1.0)


PLUGIN = Plugin(name="p", kind=ENGINE, runner="x:y",
                settings={"steps": Setting(10), "impl": Setting("a", choices=("a", "b")), "bf16": Setting(True)},
                presets={"small": {"steps": 2}, "real": {"steps": 200, "bf16": False}}, default_preset="small")


def test_settings_precedence_default_then_preset_then_set():
    assert resolve_settings(PLUGIN, None, []) == ("small", {"steps": 2, "impl": "a", "bf16": True})
    assert resolve_settings(PLUGIN, "real", [])[1] == {"steps": 200, "impl": "a", "bf16": False}
    assert resolve_settings(PLUGIN, "real", sets(steps="7", impl="b"))[1]["steps"] == 7


@pytest.mark.parametrize("preset, items, match", [
    ("huge", {}, "unknown preset"), (None, {"nope": "1"}, "unknown setting"), (None, {"impl": "c"}, "one of"),
])
def test_bad_settings(preset, items, match):
    with pytest.raises(UsageError, match=match):
        resolve_settings(PLUGIN, preset, sets(**items))


def test_default_preset_per_device_type():
    plugin = Plugin(name="k", kind=ENGINE, runner="x:y", settings={"S": Setting(128)},
                    presets={"smoke": {"S": 4}}, default_preset={"cpu": "smoke"})
    assert resolve_settings(plugin, None, [], "cpu") == ("smoke", {"S": 4})
    assert resolve_settings(plugin, None, [], "cuda") == (None, {"S": 128})
    assert resolve_settings(plugin, None, sets(S="9"), "cpu")[1] == {"S": 9}


def test_prefixed_keys_reach_validate_and_other_unknown_keys_are_refused():
    seen = []
    plugin = Plugin(name="q", kind=ENGINE, runner="x:y", settings={"steps": Setting(1)},
                    setting_prefixes=("config.",), validate=lambda s, device: seen.append((dict(s), device)) or [])
    assert resolve_settings(plugin, None, sets(**{"config.depth": "4"}), "cuda")[1]["config.depth"] == 4
    assert seen == [({"steps": 1, "config.depth": 4}, "cuda")]
    with pytest.raises(UsageError, match="unknown setting"):
        resolve_settings(plugin, None, sets(depth="4"))  # a plugin with validate still refuses typos


def test_validate_sees_the_device_type():
    plugin = Plugin(name="g", kind=ENGINE, runner="x:y", settings={"timing": Setting("events")},
                    validate=lambda s, device: ["timing=graph needs cuda"]
                    if s["timing"] == "graph" and device != "cuda" else [])
    assert resolve_settings(plugin, None, sets(timing="graph"), "cuda")[1]["timing"] == "graph"
    with pytest.raises(UsageError, match="needs cuda"):
        resolve_settings(plugin, None, sets(timing="graph"), "cpu")


TWO = Registry({"a": Plugin(name="a", kind=ENGINE, runner="x:y", settings={"S": Setting(1), "n": Setting(1)}),
                "b": Plugin(name="b", kind=ENGINE, runner="x:y", settings={"n": Setting(2)})})


def _settings(plan):
    return {c.case.plugin: c.case.settings for c in plan.cases}


def test_an_unscoped_setting_goes_only_to_the_plugins_that_have_it():
    plan = build_plan(TWO, Choices(device="cpu", sets=["S=8", "n=5"]))
    assert _settings(plan) == {"a": {"S": 8, "n": 5}, "b": {"n": 5}}
    with pytest.raises(UsageError, match="no selected plugin has a setting 'T'"):
        build_plan(TWO, Choices(device="cpu", sets=["T=1"]))


def test_a_scoped_setting_goes_to_its_plugin_only():
    plan = build_plan(TWO, Choices(device="cpu", sets=["b:n=7", "a:S=3"]))
    assert _settings(plan) == {"a": {"S": 3, "n": 1}, "b": {"n": 7}}
    with pytest.raises(UsageError, match="unknown setting"):
        build_plan(TWO, Choices(device="cpu", sets=["b:S=1"]))
    with pytest.raises(UsageError, match="not selected"):
        build_plan(TWO, Choices(plugins=["a"], device="cpu", sets=["b:n=1"]))


def test_a_sweep_plans_the_product_of_its_values_per_size():
    plan = build_plan(TWO, Choices(plugins=["a"], device="cpu", seq_len="8,16", sweeps=["S=1,2,3", "n=5,6"]))
    got = [(c.case.settings["S"], c.case.settings["n"], c.case.seq_len) for c in plan.cases]
    assert got == [(s, n, L) for s in (1, 2, 3) for n in (5, 6) for L in (8, 16)]
    assert plan.combinations == 6 and len({c.case_id for c in plan.cases}) == 12
    assert len({c.group for c in plan.cases}) == 6  # each combination its own --until-oom group


def test_a_sweep_is_routed_like_set_and_a_plugin_without_the_key_runs_once():
    plan = build_plan(TWO, Choices(device="cpu", seq_len="8", sweeps=["S=1,2"]))
    assert sorted((c.case.plugin, c.case.settings.get("S")) for c in plan.cases) == [("a", 1), ("a", 2), ("b", None)]
    plan = build_plan(TWO, Choices(device="cpu", seq_len="8", sweeps=["b:n=3,4"]))
    assert sorted((c.case.plugin, c.case.settings["n"]) for c in plan.cases) == [("a", 1), ("b", 3), ("b", 4)]


@pytest.mark.parametrize("sweeps, sets_, match", [
    (["S="], [], "comma-separated"), (["S=1,,2"], [], "comma-separated"), (["S"], [], "KEY=V1"),
    (["S=1", "S=2"], [], "swept twice"), (["S=1,2"], ["S=3"], "also fixed by --set"),
    (["T=1,2"], [], "no selected plugin has a setting 'T'"), (["S=1,x"], [], "expected an integer"),
])
def test_bad_sweeps_are_usage_errors(sweeps, sets_, match):
    with pytest.raises(UsageError, match=match):
        build_plan(TWO, Choices(device="cpu", seq_len="8", sweeps=sweeps, sets=sets_))


def test_the_number_of_cases_is_capped():
    with pytest.raises(UsageError, match="--max-cases 5"):
        build_plan(TWO, Choices(device="cpu", seq_len="1:6:1", max_cases=5))
    assert len(build_plan(TWO, Choices(device="cpu", seq_len="1:6:1", max_cases=12)).cases) == 12


def test_a_plugin_hook_that_raises_leaves_that_plugin_out():
    def broken(n):
        raise SystemExit(9)

    registry = Registry({"a": TWO.plugins["a"], "c": Plugin(name="c", kind=ENGINE, runner="x:y", check_seq_len=broken)})
    plan = build_plan(registry, Choices(device="cpu"))
    assert [c.case.plugin for c in plan.cases] == ["a"]
    assert plan.skipped[0][0] == "c" and "check_seq_len raised SystemExit" in plan.skipped[0][1]
    plan = build_plan(registry, Choices(plugins=["a", "c"], device="cpu"))
    assert plan.faulty == ["c"] and [c.case.plugin for c in plan.cases] == ["a"]


def test_devices():
    assert resolve_device("cpu").name == "cpu"
    with pytest.raises(UsageError, match="expected auto"):
        resolve_device("tpu")
    if devices.gpu_count() == 0:
        assert resolve_device("auto").name == "cpu"
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    else:
        pinned = resolve_device("cuda:0")
        assert pinned.name == "cuda" and pinned.visible_devices is not None
        with pytest.raises(UsageError, match="visible"):
            resolve_device(f"cuda:{devices.gpu_count()}")


def test_plugin_without_quick_default_on_a_device_is_left_out_of_bare_runs():
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
