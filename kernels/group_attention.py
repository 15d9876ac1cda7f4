"""Triton kernels of group_attention (CRA's second attention block).

Forward: one launch, one program per group with all heads: the group's [K+1, heads, D] keys and
values are one contiguous block, loaded once; scores, bias lookup, softmax and the weighted sum
stay in registers (fp32 accumulation, fp64 for fp64); no gathered copies, no bias tensor.

Backward: one launch, one program per run of `groups_per_program` consecutive groups. Each
group's q0/k/v gradient rows are its own (no reduction across groups); the bias-table gradient
is summed over the program's groups in registers (one-hot over table entries, reduced over the
members), then either added to the table with fp32 atomics (only the entries the program
touched), or, in deterministic mode, stored as the program's partial table and summed over
programs in a fixed order by a second small launch.
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
def _group_members(tiles, nbr, i, live, N, MEMBERS: tl.constexpr, SEARCH_RANGE: tl.constexpr,
                   OFFICIAL: tl.constexpr, BLOCK_M: tl.constexpr):
    """Bias-table entry rel[BLOCK_M] and validity valid[BLOCK_M] of group i's members
    (member 0 is the center, member b >= 1 is row nbr[i, b-1]); nothing is valid when the
    group does not exist (live false) or its center row is invalid (tiles[i, 0] < 0)."""
    m = tl.arange(0, BLOCK_M)
    center_ok = live & (tl.load(tiles + 3 * i, mask=live, other=-1) >= 0)
    cy = tl.load(tiles + 3 * i + 1, mask=live, other=0)
    cx = tl.load(tiles + 3 * i + 2, mask=live, other=0)
    is_nbr = (m >= 1) & (m < MEMBERS) & center_ok
    row = tl.load(nbr + i * (MEMBERS - 1) + m - 1, mask=is_nbr, other=-1)
    row = tl.where(m == 0, i, row)
    valid = center_ok & (m < MEMBERS) & (row >= 0)
    # nbr is not validated on the GPU (a host sync): an index >= N must not read out of bounds.
    safe = valid & (row < N)
    ky = tl.load(tiles + 3 * row + 1, mask=safe, other=0)
    kx = tl.load(tiles + 3 * row + 2, mask=safe, other=0)
    return relative_position_index(cy, cx, ky, kx, SEARCH_RANGE, OFFICIAL), valid


@triton.jit
def _attention_weights(q0, k, table, i, live, rel, valid, HEADS: tl.constexpr, DIM: tl.constexpr,
                       MEMBERS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr,
                       BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    """Softmax weights p[BLOCK_M, BLOCK_H] of the center query over the valid members (zero
    elsewhere; all zero for an invalid group), and the loaded q[BLOCK_H, BLOCK_D] and
    k[BLOCK_M, BLOCK_H, BLOCK_D] (zero where masked), with the offsets and mask of k's block
    and of a [heads, D] row."""
    m = tl.arange(0, BLOCK_M)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    hd = h[:, None] * DIM + d[None, :]
    hd_mask = (h[:, None] < HEADS) & (d[None, :] < DIM) & live
    q = tl.load(q0 + i * HEADS * DIM + hd, mask=hd_mask, other=0.0).to(ACC)
    kv_offsets = i * MEMBERS * HEADS * DIM + m[:, None, None] * HEADS * DIM + hd[None, :, :]
    kv_mask = valid[:, None, None] & hd_mask[None, :, :]
    kk = tl.load(k + kv_offsets, mask=kv_mask, other=0.0).to(ACC)
    bias_mask = valid[:, None] & (h[None, :] < HEADS)
    bias = tl.load(table + rel[:, None] * HEADS + h[None, :], mask=bias_mask, other=0.0).to(ACC)
    scores = tl.sum(q[None, :, :] * kk, axis=2) / sqrt_dim(DIM, ACC) + bias
    scores = tl.where(bias_mask, scores, float("-inf"))
    top = tl.max(scores, axis=0)
    top = tl.where(top == float("-inf"), 0.0, top)  # a group with no valid member
    p = tl.where(bias_mask, tl.exp(scores - top[None, :]), 0.0)
    total = tl.sum(p, axis=0)
    p = p / tl.where(total > 0, total, 1.0)[None, :]
    return p, q, kk, kv_offsets, kv_mask, hd, hd_mask


@triton.jit
def _forward_kernel(q0, k, v, tiles, nbr, table, out, N,
                    HEADS: tl.constexpr, DIM: tl.constexpr, MEMBERS: tl.constexpr,
                    SEARCH_RANGE: tl.constexpr, OFFICIAL: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    live = i < N
    rel, valid = _group_members(tiles, nbr, i, live, N, MEMBERS, SEARCH_RANGE, OFFICIAL, BLOCK_M)
    p, q, kk, kv_offsets, kv_mask, hd, hd_mask = _attention_weights(
        q0, k, table, i, live, rel, valid, HEADS, DIM, MEMBERS, BLOCK_M, BLOCK_H, BLOCK_D, ACC)
    vv = tl.load(v + kv_offsets, mask=kv_mask, other=0.0).to(ACC)
    o = tl.sum(p[:, :, None] * vv, axis=0)
    tl.store(out + i * HEADS * DIM + hd, o.to(out.dtype.element_ty), mask=hd_mask)


@triton.jit
def _backward_kernel(grad_out, q0, k, v, tiles, nbr, table, grad_q0, grad_k, grad_v, grad_table,
                     N, groups_per_program,
                     HEADS: tl.constexpr, DIM: tl.constexpr, MEMBERS: tl.constexpr,
                     SEARCH_RANGE: tl.constexpr, OFFICIAL: tl.constexpr, TABLE: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_T: tl.constexpr, DETERMINISTIC: tl.constexpr, ACC: tl.constexpr):
    """grad_table: [programs, TABLE, HEADS] partials (DETERMINISTIC) or [TABLE, HEADS] zeros
    that the program's sums are atomically added to."""
    pid = tl.program_id(0).to(tl.int64)
    m = tl.arange(0, BLOCK_M)
    t = tl.arange(0, BLOCK_T)
    h = tl.arange(0, BLOCK_H)
    partial = tl.zeros([BLOCK_T, BLOCK_H], ACC)
    touched = tl.zeros([BLOCK_T], tl.int32)
    for j in range(groups_per_program):
        i = pid * groups_per_program + j
        live = i < N
        rel, valid = _group_members(tiles, nbr, i, live, N, MEMBERS, SEARCH_RANGE, OFFICIAL,
                                    BLOCK_M)
        p, q, kk, kv_offsets, kv_mask, hd, hd_mask = _attention_weights(
            q0, k, table, i, live, rel, valid, HEADS, DIM, MEMBERS, BLOCK_M, BLOCK_H, BLOCK_D, ACC)
        vv = tl.load(v + kv_offsets, mask=kv_mask, other=0.0).to(ACC)
        g = tl.load(grad_out + i * HEADS * DIM + hd, mask=hd_mask, other=0.0).to(ACC)
        # d(loss)/d(score_b) = p_b (g.v_b - sum_c p_c g.v_c): the softmax Jacobian.
        dp = tl.sum(g[None, :, :] * vv, axis=2)
        ds = p * (dp - tl.sum(p * dp, axis=0)[None, :])
        dscore = ds / sqrt_dim(DIM, ACC)
        row_mask = (m[:, None, None] < MEMBERS) & hd_mask[None, :, :]
        tl.store(grad_v + kv_offsets, (p[:, :, None] * g[None, :, :]).to(grad_v.dtype.element_ty),
                 mask=row_mask)
        tl.store(grad_k + kv_offsets, (dscore[:, :, None] * q[None, :, :]).to(grad_k.dtype.element_ty),
                 mask=row_mask)
        dq = tl.sum(dscore[:, :, None] * kk, axis=0)
        tl.store(grad_q0 + i * HEADS * DIM + hd, dq.to(grad_q0.dtype.element_ty), mask=hd_mask)
        # One-hot over table entries, summed over the members: hits[m, t] = (rel[m] == t).
        hits = (rel[:, None] == t[None, :]) & valid[:, None]
        partial += tl.sum(tl.where(hits[:, :, None], ds[:, None, :], 0.0), axis=0)
        touched = tl.maximum(touched, tl.max(hits.to(tl.int32), axis=0))
    entry = t[:, None] * HEADS + h[None, :]
    entry_mask = (t[:, None] < TABLE) & (h[None, :] < HEADS)
    if DETERMINISTIC:
        tl.store(grad_table + pid * TABLE * HEADS + entry, partial, mask=entry_mask)
    else:
        tl.atomic_add(grad_table + entry, partial, mask=entry_mask & (touched[:, None] > 0))


def _blocks(q0: torch.Tensor, members: int, search_range: int, bucketing: str) -> dict:
    heads, dim = q0.shape[1:]
    return dict(
        HEADS=heads, DIM=dim, MEMBERS=members, SEARCH_RANGE=search_range,
        OFFICIAL=bucketing == "official",
        BLOCK_M=max(2, triton.next_power_of_2(members)), BLOCK_H=triton.next_power_of_2(heads),
        BLOCK_D=triton.next_power_of_2(dim),
        ACC=tl.float64 if q0.dtype == torch.float64 else tl.float32,
    )


def _num_warps(blocks: dict, backward: bool) -> int:
    # About 32 elements of a [members, heads, D] block per thread, twice as many warps for
    # the backward's extra blocks: no register spills on sm_90 up to K=16, D=64, s=8 (ptxas).
    elements = blocks["BLOCK_M"] * blocks["BLOCK_H"] * blocks["BLOCK_D"] * (2 if backward else 1)
    return 1 if _INTERPRETER else max(1, min(8, elements // 1024))


def group_attention_forward(q0: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            tiles: torch.Tensor, nbr: torch.Tensor, bias_table: torch.Tensor,
                            search_range: int, bucketing: str) -> torch.Tensor:
    """Launch on contiguous, already-checked inputs; see fastmatte.ops.group_attention."""
    out = torch.empty_like(q0)
    n = q0.shape[0]
    if n == 0 or out.numel() == 0:
        return out
    blocks = _blocks(q0, k.shape[1], search_range, bucketing)
    _forward_kernel[(n,)](q0, k, v, tiles, nbr, bias_table, out, n, **blocks,
                          num_warps=_num_warps(blocks, backward=False))
    return out


def _groups_per_program(n: int) -> int:
    # Enough programs to fill a large GPU; more groups per program means fewer table atomics
    # (or smaller partial tables) per group.
    return max(1, min(16, n // 2048))


def group_attention_backward(grad_out: torch.Tensor, q0: torch.Tensor, k: torch.Tensor,
                             v: torch.Tensor, tiles: torch.Tensor, nbr: torch.Tensor,
                             bias_table: torch.Tensor, search_range: int, bucketing: str,
                             deterministic: bool):
    """(grad_q0, grad_k, grad_v, grad_bias_table) on contiguous, already-checked inputs.
    deterministic: bitwise-reproducible table gradient (partials summed in a fixed order)
    instead of atomics."""
    grad_q0, grad_k, grad_v = torch.empty_like(q0), torch.empty_like(k), torch.empty_like(v)
    n = q0.shape[0]
    acc_dtype = torch.float64 if q0.dtype == torch.float64 else torch.float32
    if n == 0 or q0.numel() == 0:
        return grad_q0, grad_k, grad_v, torch.zeros_like(bias_table)
    blocks = _blocks(q0, k.shape[1], search_range, bucketing)
    table = bias_table.shape[0]
    per_program = _groups_per_program(n)
    programs = triton.cdiv(n, per_program)
    if deterministic:
        grad_table = torch.empty((programs, table, blocks["HEADS"]), dtype=acc_dtype, device=q0.device)
    else:
        grad_table = torch.zeros(bias_table.shape, dtype=acc_dtype, device=q0.device)
    _backward_kernel[(programs,)](
        grad_out, q0, k, v, tiles, nbr, bias_table, grad_q0, grad_k, grad_v, grad_table,
        n, per_program, TABLE=table, BLOCK_T=triton.next_power_of_2(table),
        DETERMINISTIC=deterministic, **blocks, num_warps=_num_warps(blocks, backward=True))
    if not deterministic:
        return grad_q0, grad_k, grad_v, grad_table.to(bias_table.dtype)
    return grad_q0, grad_k, grad_v, sum_partials(grad_table, bias_table)
