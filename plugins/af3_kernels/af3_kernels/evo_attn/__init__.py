"""Fused Evoformer attention (AlphaFold's triangle, MSA row/column and single attention), in Triton.

    from af3_kernels.evo_attn.function import evo_attention, EvoformerAttention

    out = softmax(q k^T / sqrt(D) + bias + mask term) v   (* sigmoid(gate)), per head

Modules: ``function.py`` (the public call, autograd Function and nn.Module; the layouts),
``reference.py`` (PyTorch, any device; the rows view every variant reduces to; mask semantics),
``kernels.py`` (the Triton kernels), ``launch.py`` (configurations, grids, launches), ``options.py``
(implementation choices), ``spec.py`` and ``case.py`` (the benchmark case), ``anchors.py`` (SDPA,
trifast, cuEquivariance adapters), ``tune.py`` (configuration sweeps, GPU). Importing this package
is cheap: it imports none of them.

Design
------
One kernel family serves every variant: each is attention over L positions within each of R rows
that share one bias [B, H, L, L] (tri_start: R = L = N; tri_end: the same on the transposed pair
tensor, read through its strides, no copy; msa_row: R = S, L = N; msa_col: R = N, L = S, no bias;
single: R = 1). A program owns one (b, h), one block of queries (or keys) and a group of ROWS rows,
so each bias tile is loaded and scaled once for ROWS rows (the bias tile is the largest operand a
tile step reads at D = 32: BLOCK_M*BLOCK_N*2 bytes against (BLOCK_M + 2*BLOCK_N)*D*2 for q, k, v).

Forward (_fwd_kernel): flash attention with the online softmax in base 2 and P V on tensor cores
(tl.dot, fp32 accumulation; fp32 inputs at input_precision "ieee" by default, tf32 / tf32x3 /
bf16x3 / bf16x6 on request). The bias tile, divided by the softmax scale once per row group, is the
accumulator the Q K^T product starts from, so each exponential's argument t * (scale*log2 e) - m is
one multiply-add. It stores lse = m + log2(l) for the backward.
Backward (FlashAttention-2): a prep kernel (delta = rowsum(dO' * O), dO' = dout * sigmoid(gate),
the gate's gradient), a dK/dV kernel looping over query blocks in the transposed domain (keys are
the M of every product, so P^T and dS^T are register operands), and a dQ kernel looping over key
blocks that also reduces dbias = sum over rows of dS: the group's ROWS rows are summed in
registers, then one fp32 atomic add per element per row group lands in a [B, H, L, L] buffer that
stays in L2 (N/ROWS adds per bias element for triangle attention, not N; a single group stores
directly). No dS, P or N^3 tensor is ever written.

What bounds it (H200: 3.9e12 exp/s, 790e12 bf16 tensor flop/s, 4.3e12 B/s; B = 1, H = 4, D = 32,
bf16 triangle attention; case.evo_attn_floor has the arithmetic)
- Forward: N^3*H exponentials (58 us at N = 384) against 4*N^3*H*D tensor flops (37 us) and
  4*N^2*H*D*2 bytes (35 us): the MUFU unit is the floor. Around each exp the other pipes do the
  max, the multiply-add, the row sum, the conversion to bf16, the rescaling of the accumulator,
  addresses and loop control: the SASS of the default loop (sm_90a, Triton 3.9) issues ~10
  instructions per logit (1.06 MUFU), so instruction issue (4 warp-instructions per clock per SM)
  rather than MUFU (16 exps per clock per SM) is the nearer limit: ~0.08 against ~0.066 clocks
  per logit per SM, i.e. ~1.2-1.5x the exp floor when the tensor-core work overlaps (70-90 us at
  N = 384; target 116). Measured on the H200 with Triton 3.6: 297 us (docs/BENCHMARKS.md), so
  this estimate is missing what Triton 3.6 makes of the loop. BLOCK_N 128 with ROWS 2 gets ~9 per logit at 255 registers (tune.py).
  ``options.poly_exp_rows`` moves the exponentials of some rows of each group to a degree-3
  polynomial on the FMA units (FlashAttention-4's trick): it pays only while MUFU, not issue, is
  the limit; measure it (tune.py --poly 0,1).
- Backward: two passes rebuild P (2*N^3*H exps) and do 7 products of 2*N^3*H*D flops (Q K^T twice,
  dO V^T twice, P^T dO, dS^T Q, dS K): 7/5 of the 5-product floor's tensor work, the price of no
  dQ atomics; plus N^3*H/ROWS dbias atomics (scalar red.global.add.f32: 1/2 per logit at the
  default ROWS = 2) and L2 traffic for the bias and the q/dO tiles. Expect fwd+bwd at 2-3x its
  floor (tensor-bound, 128 us at N = 384; target 385).
- Offline compile for sm_90a (tests/test_evo_attn.py checks it): the default 16-bit
  configurations fit without spills and use wgmma for every product. ptxas serialises the dQ
  kernel's wgmma (C7515, "non wgmma instructions defining accumulator registers"); the forward and
  the default dK/dV kernel are not affected.
"""
