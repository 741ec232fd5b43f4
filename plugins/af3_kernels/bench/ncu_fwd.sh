#!/usr/bin/env bash
# Nsight Compute report of the shipped forward's kernels at one shape (default bf16, S=128 R=384 C=8;
# skips the first two matching launches (the first forward where it launches two kernels), reports three):
#   bash plugins/af3_kernels/bench/ncu_fwd.sh OUTFILE [S R C [DTYPE [PRECISION]]]
set -euo pipefail
out=$1; S=${2:-128}; R=${3:-384}; C=${4:-8}; DTYPE=${5:-bf16}; PREC=${6:-ieee}
cd "$(dirname "$0")"
ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section LaunchStats \
    --section Occupancy --section WarpStateStats --section ComputeWorkloadAnalysis \
    -k regex:"_fwd_kernel|_fwd_tma_kernel|_stats_kernel|_stats_gluon_kernel|_to_gemm" --launch-skip 2 --launch-count 3 \
    python3 -c "
import torch
from af3_kernels.ops import msa_pwa
from bench_msa_pwa import inputs
v, b, g, _ = inputs('$DTYPE', $S, $R, $C)
with torch.no_grad():
    for _ in range(3):
        msa_pwa.msa_pair_weighted_averaging(v, b, g, precision='$PREC')
torch.cuda.synchronize()
" > "$out" 2>&1
