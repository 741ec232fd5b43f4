"""af3core.jaxrun.random_haiku_params: the random parameters both AlphaFold plugins run with."""
from types import SimpleNamespace

import numpy as np

from af3core.jaxrun import count_haiku_params, random_haiku_params


def leaf(*shape, dtype="float32"):
    return SimpleNamespace(shape=shape, dtype=dtype)


def test_weights_scale_by_fan_in_without_stack_axes_and_keep_their_dtype():
    shapes = {"stack/__layer_stack_no_state/linear": {"weights": leaf(4, 256, 64), "bias": leaf(4, 64)},
              "attention": {"output_w": leaf(8, 32, 128, dtype="float16"), "output_b": leaf(128)},
              "norm": {"scale": leaf(128), "offset": leaf(128)}}
    params = random_haiku_params(shapes, seed=0, stack_axes=lambda module: module.count("__layer_stack"))
    w = params["stack/__layer_stack_no_state/linear"]["weights"]
    assert w.shape == (4, 256, 64) and abs(float(w.std()) - 256 ** -0.5) < 0.05 * 256 ** -0.5  # not 4's fan-in
    out = params["attention"]["output_w"]  # an attention output contracts heads and channels
    assert out.dtype == np.float16 and abs(float(out.astype(np.float32).std()) - 256 ** -0.5) < 0.05 * 256 ** -0.5
    assert not params["stack/__layer_stack_no_state/linear"]["bias"].any() and not params["attention"]["output_b"].any()
    assert (params["norm"]["scale"] == 1).all() and not params["norm"]["offset"].any()
    assert count_haiku_params(params) == 4 * 256 * 64 + 4 * 64 + 8 * 32 * 128 + 128 + 2 * 128
    again = random_haiku_params(shapes, seed=0, stack_axes=lambda module: module.count("__layer_stack"))
    assert np.array_equal(again["attention"]["output_w"], out)  # seeded
    other = random_haiku_params(shapes, seed=1, stack_axes=lambda module: 0)
    assert not np.array_equal(other["attention"]["output_w"], out)
