#!/usr/bin/env bash
# Nsight Compute report of the exact fp32 forward's GEMM kernels at (S, R, C) = (128, 384, 8):
# Triton's _fwd_kernel and the Gluon _fwd_fma_kernel (msa_pwa_fma) with the given configuration
# changes (a Python dict, default none), the second Triton launch and both Gluon launches:
#   bash plugins/af3_kernels/bench/ncu_gluon_fma.sh OUTFILE ["dict(SPT_N=4)"]
set -euo pipefail
out=$1; cfg=${2:-"dict()"}
cd "$(dirname "$0")"
ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis_Tables --section Occupancy \
    --section WarpStateStats --section ComputeWorkloadAnalysis --section InstructionStats \
    -k regex:"_fwd_kernel|_fwd_fma_kernel" --launch-skip 1 --launch-count 3 \
    python3 -c "
import torch
from af3_kernels.ops import msa_pwa, msa_pwa_fma
from bench_msa_pwa import inputs
msa_pwa_fma.CONFIG_OVERRIDES.update($cfg)
v, b, g, _ = inputs('fp32', 128, 384, 8)
with torch.no_grad():
    for gluon in (False, False, True, True):  # launches: warm, [triton], warm, [gluon]
        msa_pwa.USE_GLUON_FMA_FORWARD = gluon
        msa_pwa.msa_pair_weighted_averaging(v, b, g)
torch.cuda.synchronize()
" > "$out" 2>&1
