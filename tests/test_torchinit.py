"""af3core.truncnorm_by_torch: the OpenFold-lineage engines' truncated-normal init drawn by torch has
scipy's distribution, follows torch's seed, and leaves the engine's module as it found it."""
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

from af3core import truncnorm_by_torch  # noqa: E402
from af3core.torchinit import TorchTruncnorm  # noqa: E402


def _engine_module():
    """A module shaped like the engines' initialisation modules: trunc_normal_init_ samples through
    the module's own ``truncnorm`` (OpenFold's function, as Boltz, OpenFold3, Protenix and Ligo copy it)."""
    module = types.ModuleType("fake_initialize")
    module.truncnorm = stats.truncnorm
    module.np = np

    def trunc_normal_init_(weights, scale=1.0):
        fan_in = weights.shape[1]
        std = (scale / max(1, fan_in)) ** 0.5 / module.truncnorm.std(a=-2, b=2, loc=0, scale=1)
        samples = np.reshape(module.truncnorm.rvs(a=-2, b=2, loc=0, scale=std, size=weights.numel()), weights.shape)
        with torch.no_grad():
            weights.copy_(torch.tensor(samples))

    module.trunc_normal_init_ = trunc_normal_init_
    return module


@pytest.mark.parametrize("a,b,loc,scale", [(-2, 2, 0.0, 1.0), (-2, 2, 0.0, 0.05), (-1, 3, 0.5, 2.0)])
def test_draws_have_scipys_distribution(a, b, loc, scale):
    torch.manual_seed(0)
    x = TorchTruncnorm(stats.truncnorm).rvs(a=a, b=b, loc=loc, scale=scale, size=400_000)
    assert x.shape == (400_000,) and x.dtype == np.float32
    assert loc + a * scale <= x.min() and x.max() <= loc + b * scale
    ref = stats.truncnorm(a, b, loc=loc, scale=scale)
    assert abs(x.mean() - ref.mean()) < 0.01 * scale
    assert abs(x.std() - ref.std()) < 0.01 * ref.std()
    # the shape of the distribution too: its quartiles
    assert np.allclose(np.quantile(x, [0.25, 0.5, 0.75]), ref.ppf([0.25, 0.5, 0.75]), atol=0.01 * scale)


def test_the_swap_follows_torchs_seed_and_is_undone():
    module = _engine_module()
    weights = [torch.empty(64, 32) for _ in range(3)]
    with truncnorm_by_torch(module, types.ModuleType("without_truncnorm")) as swapped:
        assert swapped == 1 and isinstance(module.truncnorm, TorchTruncnorm)
        for w in weights[:2]:
            torch.manual_seed(7)
            module.trunc_normal_init_(w)
    assert module.truncnorm is stats.truncnorm  # restored
    assert torch.equal(weights[0], weights[1])  # one seed, one draw: scipy's own drew from numpy's state
    std = (1 / 32) ** 0.5 / stats.truncnorm.std(-2, 2)
    assert weights[0].abs().max() <= 2 * std and abs(float(weights[0].std()) / (1 / 32) ** 0.5 - 1) < 0.1
    with pytest.raises(RuntimeError):
        with truncnorm_by_torch(module):
            raise RuntimeError("a build that fails")
    assert module.truncnorm is stats.truncnorm  # restored on failure too


@pytest.mark.parametrize("size,shape", [(6, (6,)), (np.int64(6), (6,)), ((2, 3), (2, 3)), (None, ())])
def test_sizes_as_the_engines_pass_them(size, shape):
    x = TorchTruncnorm(stats.truncnorm).rvs(-2, 2, size=size)
    assert np.shape(x) == shape


def test_an_explicit_scipy_random_state_still_gets_scipy():
    draws = [TorchTruncnorm(stats.truncnorm).rvs(-2, 2, size=5, random_state=3) for _ in range(2)]
    assert np.array_equal(draws[0], draws[1])
    assert np.array_equal(draws[0], stats.truncnorm.rvs(-2, 2, size=5, random_state=3))
