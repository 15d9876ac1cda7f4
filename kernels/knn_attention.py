"""Triton kernels of knn_attention (CRA's first attention block).

Forward: one launch, one program per group, looping over heads: the k+1 members' q/k/v rows are
read by index straight into registers (no gathered copies), the (k+1) x (k+1) scores get their
bias from the table by relative-position index (no bias tensor), softmax and the weighted sum
stay in registers (fp32 accumulation, fp64 for fp64).

Backward: one launch with the same layout. A tile belongs to many groups, so its q/k/v
gradients and the table's are sums over groups: fp32 atomics by default; with
deterministic=True the kernel writes per-(group, member) partials instead, which are summed in
a fixed order (index_put_ with accumulate, deterministic under torch's deterministic mode, and
one small launch for the table).
"""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.attention_common import sqrt_dim
from fastmatte.kernels.partials import sum_partials
from fastmatte.kernels.relative_position import relative_position_index

_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _group(tiles, nbr, i, N, K: tl.constexpr, SEARCH_RANGE: tl.constexpr, OFFICIAL: tl.constexpr,
           BLOCK_M: tl.constexpr):
    """Rows row[BLOCK_M] of group i (member 0 = i, member b = nbr[i, b-1]), their validity, and
    rel[a, b], the bias-table entry of member b's tile seen from member a's."""
    m = tl.arange(0, BLOCK_M)
    center_ok = tl.load(tiles + 3 * i) >= 0
    is_nbr = (m >= 1) & (m <= K) & center_ok
    row = tl.load(nbr + i * K + m - 1, mask=is_nbr, other=-1)
    row = tl.where(m == 0, i, row)
    # nbr is not validated on the GPU (a host sync): a row >= N is treated as missing.
    valid = center_ok & (m <= K) & (row >= 0) & (row < N)
    row = tl.where(valid, row, 0).to(tl.int64)
    y = tl.load(tiles + 3 * row + 1, mask=valid, other=0)
    x = tl.load(tiles + 3 * row + 2, mask=valid, other=0)
    rel = relative_position_index(y[:, None], x[:, None], y[None, :], x[None, :], SEARCH_RANGE,
                                  OFFICIAL)
    return row, valid, rel


@triton.jit
def _head_weights(q, k, table, row, valid, rel, h, HEADS: tl.constexpr, DIM: tl.constexpr,
                  BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    """Softmax weights p[a, b] of head h (zero outside valid pairs), q and k rows [BLOCK_M,
    BLOCK_D] of the group's members, and the offsets and mask of those rows."""
    d = tl.arange(0, BLOCK_D)
    offsets = row[:, None] * (HEADS * DIM) + h * DIM + d[None, :]
    mask = valid[:, None] & (d[None, :] < DIM)
    qq = tl.load(q + offsets, mask=mask, other=0.0).to(ACC)
    kk = tl.load(k + offsets, mask=mask, other=0.0).to(ACC)
    pair = valid[:, None] & valid[None, :]
    bias = tl.load(table + rel * HEADS + h, mask=pair, other=0.0).to(ACC)
    scores = tl.sum(qq[:, None, :] * kk[None, :, :], axis=2) / sqrt_dim(DIM, ACC) + bias
    scores = tl.where(pair, scores, float("-inf"))
    top = tl.max(scores, axis=1)
    top = tl.where(top == float("-inf"), 0.0, top)  # a member that is not valid
    p = tl.where(pair, tl.exp(scores - top[:, None]), 0.0)
    total = tl.sum(p, axis=1)
    return p / tl.where(total > 0, total, 1.0)[:, None], qq, kk, offsets, mask


@triton.jit
def _forward_kernel(q, k, v, tiles, nbr, table, out, N, HEADS: tl.constexpr, DIM: tl.constexpr,
                    K: tl.constexpr, SEARCH_RANGE: tl.constexpr, OFFICIAL: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    row, valid, rel = _group(tiles, nbr, i, N, K, SEARCH_RANGE, OFFICIAL, BLOCK_M)
    m = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    out_mask = (m[:, None] <= K) & (d[None, :] < DIM)
    for h in tl.static_range(HEADS):
        p, qq, kk, offsets, mask = _head_weights(q, k, table, row, valid, rel, h, HEADS, DIM,
                                                 BLOCK_D, ACC)
        vv = tl.load(v + offsets, mask=mask, other=0.0).to(ACC)
        o = tl.sum(p[:, :, None] * vv[None, :, :], axis=1)
        out_offsets = ((i * (K + 1) + m[:, None]) * HEADS + h) * DIM + d[None, :]
        tl.store(out + out_offsets, o.to(out.dtype.element_ty), mask=out_mask)


@triton.jit
def _backward_kernel(grad_out, q, k, v, tiles, nbr, table, grad_q, grad_k, grad_v, grad_table,
                     N, HEADS: tl.constexpr, DIM: tl.constexpr, K: tl.constexpr,
                     SEARCH_RANGE: tl.constexpr, OFFICIAL: tl.constexpr, TABLE: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_H: tl.constexpr, DETERMINISTIC: tl.constexpr, ACC: tl.constexpr):
    """Default: grad_q/k/v [N, HEADS, DIM] and grad_table [TABLE, HEADS] are zeroed fp32 sums
    that receive atomics. DETERMINISTIC: grad_q/k/v are [N, K+1, HEADS, DIM] per-member
    partials and grad_table is [N, TABLE, HEADS] per-group partials."""
    i = tl.program_id(0).to(tl.int64)
    row, valid, rel = _group(tiles, nbr, i, N, K, SEARCH_RANGE, OFFICIAL, BLOCK_M)
    m = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    t = tl.arange(0, BLOCK_T)
    hh = tl.arange(0, BLOCK_H)
    pair = valid[:, None] & valid[None, :]
    partial = tl.zeros([BLOCK_T, BLOCK_H], ACC)
    for h in tl.static_range(HEADS):
        p, qq, kk, offsets, mask = _head_weights(q, k, table, row, valid, rel, h, HEADS, DIM,
                                                 BLOCK_D, ACC)
        vv = tl.load(v + offsets, mask=mask, other=0.0).to(ACC)
        member_offsets = ((i * (K + 1) + m[:, None]) * HEADS + h) * DIM + d[None, :]
        g = tl.load(grad_out + member_offsets, mask=mask, other=0.0).to(ACC)
        dv = tl.sum(p[:, :, None] * g[:, None, :], axis=0)
        dp = tl.sum(g[:, None, :] * vv[None, :, :], axis=2)
        ds = p * (dp - tl.sum(p * dp, axis=1)[:, None])  # the softmax Jacobian
        dscore = ds / sqrt_dim(DIM, ACC)
        dq = tl.sum(dscore[:, :, None] * kk[None, :, :], axis=1)
        dk = tl.sum(dscore[:, :, None] * qq[:, None, :], axis=0)
        if DETERMINISTIC:
            tl.store(grad_q + member_offsets, dq, mask=mask)
            tl.store(grad_k + member_offsets, dk, mask=mask)
            tl.store(grad_v + member_offsets, dv, mask=mask)
            hits = tl.where(rel[:, :, None] == t[None, None, :], ds[:, :, None], 0.0)
            column = tl.sum(tl.sum(hits, axis=0), axis=0)
            partial += tl.where(hh[None, :] == h, column[:, None], 0.0)
        else:
            tl.atomic_add(grad_q + offsets, dq, mask=mask)
            tl.atomic_add(grad_k + offsets, dk, mask=mask)
            tl.atomic_add(grad_v + offsets, dv, mask=mask)
            tl.atomic_add(grad_table + rel * HEADS + h, ds, mask=pair)
    if DETERMINISTIC:
        entry = t[:, None] * HEADS + hh[None, :]
        tl.store(grad_table + i * TABLE * HEADS + entry, partial,
                 mask=(t[:, None] < TABLE) & (hh[None, :] < HEADS))


def _blocks(q: torch.Tensor, k_neighbours: int, search_range: int, bucketing: str) -> dict:
    heads, dim = q.shape[1:]
    return dict(HEADS=heads, DIM=dim, K=k_neighbours, SEARCH_RANGE=search_range,
                OFFICIAL=bucketing == "official",
                BLOCK_M=max(2, triton.next_power_of_2(k_neighbours + 1)),
                BLOCK_D=triton.next_power_of_2(dim),
                ACC=tl.float64 if q.dtype == torch.float64 else tl.float32)


def _num_warps(blocks: dict) -> int:
    # The widest register block is [members, members, D]: about 32 elements per thread.
    elements = blocks["BLOCK_M"] * blocks["BLOCK_M"] * blocks["BLOCK_D"]
    return 1 if _INTERPRETER else max(1, min(8, elements // 1024))


def knn_attention_forward(q, k, v, tiles, nbr, bias_table, search_range, bucketing):
    """Launch on contiguous, already-checked inputs; see fastmatte.ops.knn_attention."""
    n, heads, dim = q.shape
    out = q.new_empty((n, nbr.shape[1] + 1, heads, dim))
    if out.numel() == 0:
        return out
    blocks = _blocks(q, nbr.shape[1], search_range, bucketing)
    _forward_kernel[(n,)](q, k, v, tiles, nbr, bias_table, out, n, **blocks,
                          num_warps=_num_warps(blocks))
    return out


def knn_attention_backward(grad_out, q, k, v, tiles, nbr, bias_table, search_range, bucketing,
                           deterministic):
    """(grad_q, grad_k, grad_v, grad_bias_table) on contiguous, already-checked inputs.
    deterministic: bitwise-reproducible sums (fixed order) instead of atomics."""
    n, heads, dim = q.shape
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    if q.numel() == 0:
        return (torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v),
                torch.zeros_like(bias_table))
    blocks = _blocks(q, nbr.shape[1], search_range, bucketing)
    table = bias_table.shape[0]
    members = nbr.shape[1] + 1
    if deterministic:
        partial_shape = (n, members, heads, dim)
        grads = [torch.zeros(partial_shape, dtype=acc, device=q.device) for _ in range(3)]
        grad_table = torch.zeros((n, table, heads), dtype=acc, device=q.device)
    else:
        grads = [torch.zeros((n, heads, dim), dtype=acc, device=q.device) for _ in range(3)]
        grad_table = torch.zeros((table, heads), dtype=acc, device=q.device)
    _backward_kernel[(n,)](
        grad_out, q, k, v, tiles, nbr, bias_table, *grads, grad_table, n, TABLE=table,
        BLOCK_T=triton.next_power_of_2(table), BLOCK_H=triton.next_power_of_2(heads),
        DETERMINISTIC=deterministic, **blocks, num_warps=_num_warps(blocks))
    if deterministic:
        rows = torch.cat([torch.arange(n, device=q.device)[:, None], nbr.long()], dim=1)
        rows = rows.clamp(min=0).flatten()  # missing members carry zero partials
        grads = [torch.zeros((n, heads, dim), dtype=acc, device=q.device).index_put_(
            (rows,), part.view(-1, heads, dim), accumulate=True) for part in grads]
        grad_table = sum_partials(grad_table, bias_table)
    grad_q, grad_k, grad_v = (g.to(q.dtype) for g in grads)
    return grad_q, grad_k, grad_v, grad_table.to(bias_table.dtype)
