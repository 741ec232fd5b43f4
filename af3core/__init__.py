"""af3-bench core: the host that discovers plugins and runs their cases in isolated workers.

Public surface for plugin authors::

    from af3core import hookimpl, Plugin, Setting, Availability, Runner, Case, CaseError, NonFiniteOutput
    from af3core import installed_distribution, package_check   # engines from the package index
    from af3core import truncnorm_by_torch   # OpenFold-lineage random init in seconds
"""
from af3core.hookspecs import hookimpl
from af3core.packages import (CUEQUIVARIANCE_FIX, cuequivariance_error, cuequivariance_for_auto,
                              installed_distribution, missing_modules, package_check)
from af3core.plugin import ENGINE, KERNEL, Availability, Plugin, Setting
from af3core.runner import Case, CaseError, NonFiniteOutput, Runner, is_oom, nonfinite_outputs
from af3core.torchinit import truncnorm_by_torch

__version__ = "0.1.0"

__all__ = [
    "hookimpl",
    "Plugin",
    "Setting",
    "Availability",
    "ENGINE",
    "KERNEL",
    "Runner",
    "Case",
    "CaseError",
    "NonFiniteOutput",
    "is_oom",
    "installed_distribution",
    "missing_modules",
    "package_check",
    "CUEQUIVARIANCE_FIX",
    "cuequivariance_error",
    "cuequivariance_for_auto",
    "nonfinite_outputs",
    "truncnorm_by_torch",
    "__version__",
]
