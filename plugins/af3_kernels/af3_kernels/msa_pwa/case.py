"""One benchmark case of MSA pair-weighted averaging (the runner's KernelCase; worker only).

Inputs: v, g [B,S,R,H,C], bias [B,R,R,H] (R = --seq-len), an optional pair mask [B,R,R] keeping
80% of pairs. The implementations, behind one call ``fn(v, b, g, mask)``:

fused    this package's Triton kernel (function.py)
torch    the eager reference (reference.py): softmax plus einsum
compile  torch.compile of that reference
seed     Ligo's own Triton kernel (src/models/components/msa_kernel.py), loaded by file path
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from af3core import CaseError
from af3core.source import SourceNotFound

from af3_kernels import floors
from af3_kernels.kernel import Implementation, Inputs, KernelCase
from af3_kernels.msa_pwa.reference import masked_logits, msa_pwa_reference, reference_rows
from af3_kernels.msa_pwa.spec import LIGO_SOURCE

LIGO_KERNEL = Path("src/models/components/msa_kernel.py")
#: impl=fused: MSAPWAOptions fields changed from their defaults for A/B runs, e.g.
#: AF3_MSA_PWA_OPTIONS=gemm_layout_in_backward=1 (options.parse_options; recorded in every row)
OPTIONS_ENV = "AF3_MSA_PWA_OPTIONS"
CHECK_ROWS, CHECK_SEQS = 32, 8  # the slice of (i, s) checked against float64: cheap at any R
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16x6 on a CUDA GPU of compute capability 9.x (Hopper: faster than the FMA path and
    closer to float64, its forward in Gluon), ieee elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9:
        return "bf16x6"
    return "ieee"


def msa_pwa_floor(direction: str, B: int, S: int, R: int, H: int, C: int, dtype: str, precision: str,
                  mask: bool, rates: floors.Rates) -> floors.Floor:
    """Floor of MSA pair-weighted averaging for ``direction`` in fwd, bwd, fwdbwd.

    fwd reads v, g, bias and writes out: e*(3*S*R*H*C + R*R*H); 2*S*R*R*H*C flops; R*R*H exps.
    bwd reads dout, out, g, v, bias and writes dv, dg, dbias: e*(6*S*R*H*C + 2*R*R*H); twice the
    flops (dV = P^T dY' and dP = dY' V^T).
    fwdbwd as one unit needs out written once and nothing read twice: e*(6*S*R*H*C + 2*R*R*H),
    6*S*R*R*H*C flops. The softmax's exps are counted once per pass that needs P. A mask adds
    one byte per pair.
    """
    e = _ELEMENT_BYTES[dtype]
    srhc, rrh = B * S * R * H * C, B * R * R * H
    gemm = 2.0 * S * R * R * H * C * B
    mask_bytes = B * R * R if mask else 0
    if direction == "fwd":
        nbytes, flops, exps = e * (3 * srhc + rrh) + mask_bytes, gemm, rrh
    elif direction == "bwd":
        nbytes, flops, exps = e * (6 * srhc + 2 * rrh) + mask_bytes, 2 * gemm, rrh
    elif direction == "fwdbwd":
        nbytes, flops, exps = e * (6 * srhc + 2 * rrh) + mask_bytes, 3 * gemm, 2 * rrh
    else:
        raise ValueError(f"direction must be fwd, bwd or fwdbwd, not {direction!r}")
    return floors.floor(nbytes, flops, exps, dtype, precision, rates)


def load_seed():
    """Ligo's ``MSAWeightedAveragingFused`` and facts about it, imported from its file alone.

    Only that file is executed (it imports torch, triton and math): Ligo's ``src/utils/__init__.py``
    pulls in hydra and lightning, which inference does not need. Triton >= 3.6 rejects the file's
    plain global ``INF`` unless TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1, so that is set here.
    """
    try:
        source = LIGO_SOURCE.locate()
    except SourceNotFound as exc:
        raise CaseError(f"impl=seed: {exc.reason}; fix: {exc.fix}") from None
    os.environ.setdefault("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS", "1")
    path = source.root / LIGO_KERNEL
    spec = importlib.util.spec_from_file_location("af3_kernels._ligo_msa_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    facts = {"seed_path": str(path), "seed_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
             "seed_source_version": source.version, "seed_source_origin": source.origin,
             "TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": os.environ.get("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"),
             "seed_note": "Ligo's kernel overwrites b in backward; b is refilled untimed per repetition"}
    return module.MSAWeightedAveragingFused, facts


class MSAPWACase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.B, self.S, self.H, self.C = (int(s[k]) for k in ("B", "S", "H", "C"))
        self.R = int(size)
        self.use_mask = bool(s["mask"])
        self.dtype_name = s["dtype"]
        self.p_mode = s["p_mode"]
        self.precision = resolve_precision(s["precision"], device)

    def facts(self) -> dict[str, Any]:
        return {"shape": {"B": self.B, "S": self.S, "R": self.R, "H": self.H, "C": self.C},
                # the fp32 dots' precision; 16-bit inputs multiply in their own dtype
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        B, S, R, H, C = self.B, self.S, self.R, self.H, self.C
        mk = dict(device=self.device, dtype=dtype, generator=generator)
        v = torch.randn((B, S, R, H, C), **mk).requires_grad_(grad)
        g = torch.randn((B, S, R, H, C), **mk).requires_grad_(grad)
        b = torch.randn((B, R, R, H), **mk).requires_grad_(grad)
        mask = None
        if self.use_mask:  # keep 80% of pairs, as a padded complex would
            mask = torch.rand((B, R, R), device=self.device, generator=generator) < 0.8
        dout = torch.randn((B, S, R, H * C), **mk) if grad else None
        self._generator = generator
        return Inputs(args=(v, b, g, mask), grad_args=(v, b, g), dout=dout)

    def implementation(self, name, inputs, direction) -> Implementation:
        # The torch/compile fp32 paths: TF32 matmuls for the tf32 precisions; exact fp32 for ieee and
        # the bf16x* splits (PyTorch has no split-bf16 matmul: they are compared with exact fp32).
        torch.backends.cuda.matmul.allow_tf32 = self.precision.startswith("tf32")
        if name == "fused":
            from af3_kernels.msa_pwa import launch
            from af3_kernels.msa_pwa.function import msa_pair_weighted_averaging
            from af3_kernels.msa_pwa.options import parse_options

            precision, p_mode = self.precision, self.p_mode
            changed = os.environ.get(OPTIONS_ENV, "")
            try:
                options = parse_options(changed)
            except ValueError as exc:
                raise CaseError(f"{OPTIONS_ENV}: {exc}") from None

            def fused(v, b, g, mask):
                return msa_pair_weighted_averaging(v, b, g, mask, precision=precision, p_mode=p_mode, options=options)

            stored = launch.use_stored_p(p_mode, self.B, self.H, self.R, inputs.args[0].dtype, options)
            facts = {"p_mode": "stored" if stored else "recompute"}
            if changed.strip():
                facts["options_changed"] = changed
            return Implementation(fused, facts)
        if name == "torch":
            return Implementation(msa_pwa_reference, {"torch_matmul": self._torch_matmul()})
        if name == "compile":
            return Implementation(torch.compile(msa_pwa_reference, dynamic=False),
                                  {"torch_matmul": self._torch_matmul()})
        if name == "seed":
            seed, facts = load_seed()

            def seed_fn(v, b, g, mask):
                # Ligo applies the pair mask to b before calling its kernel (msa_module.py).
                return seed(v, masked_logits(b, mask) if mask is not None else b, g)

            b = inputs.args[1]

            def refill():
                """Ligo's kernel writes softmax(b) into its saved b during backward: restore b."""
                with torch.no_grad():
                    b.normal_(generator=self._generator)

            # The seed kernel accumulates into its uninitialised output buffer: record, don't fail.
            return Implementation(seed_fn, facts, before=refill if direction != "fwd" else None,
                                  must_be_finite=False)
        raise CaseError(f"msa_pwa has no impl {name!r}")

    def _torch_matmul(self) -> str:
        return "tf32" if self.precision.startswith("tf32") else "fp32"

    def floor(self, direction, rates) -> floors.Floor:
        return msa_pwa_floor(direction, self.B, self.S, self.R, self.H, self.C, self.dtype_name, self.precision,
                             self.use_mask, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        """Forward error on a slice of rows against float64, beside the same-dtype eager error.

        Only CHECK_ROWS rows i and CHECK_SEQS rows s: the float64 work stays small at any R, so
        the check can never be what runs out of memory in an R sweep.
        """
        v, b, g, mask = inputs.args
        k, sk = min(self.R, CHECK_ROWS), min(self.S, CHECK_SEQS)
        with torch.no_grad():
            ref64 = reference_rows(v, b, g, mask, k, sk, torch.float64)
            err = (out[:, :sk, :k].double() - ref64).abs().max().item()
            ref_err = (reference_rows(v, b, g, mask, k, sk, v.dtype).double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"rows i<{k}, s<{sk} vs float64"}
