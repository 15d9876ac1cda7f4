"""The fixed-order sum of per-program partial results: the deterministic reduction of the Triton
backwards (attention bias tables, gated_conv weight gradients)."""
import os

import torch
import triton
import triton.language as tl


@triton.jit
def sum_partials_kernel(partials, out, programs, ENTRIES: tl.constexpr, BLOCK_P: tl.constexpr,
                        BLOCK_E: tl.constexpr, ACC: tl.constexpr):
    """out[e] = sum over programs of partials[program, e], always in the same order."""
    e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    rows = tl.arange(0, BLOCK_P)
    acc = tl.zeros([BLOCK_P, BLOCK_E], ACC)
    for start in range(0, programs, BLOCK_P):
        p = start + rows
        mask = (p[:, None] < programs) & (e[None, :] < ENTRIES)
        acc += tl.load(partials + p[:, None].to(tl.int64) * ENTRIES + e[None, :], mask=mask, other=0.0)
    tl.store(out + e, tl.sum(acc, axis=0).to(out.dtype.element_ty), mask=e < ENTRIES)


def sum_partials(partials: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The fixed-order sum over dim 0 of per-program partials [programs, *like.shape], in
    like's dtype and shape: bitwise the same on every run, whatever the scheduling."""
    out = torch.empty_like(like)
    entries = out.numel()
    block_e = min(128, triton.next_power_of_2(entries))
    acc = tl.float64 if partials.dtype == torch.float64 else tl.float32
    interpreter = os.environ.get("TRITON_INTERPRET") == "1"
    sum_partials_kernel[(triton.cdiv(entries, block_e),)](
        partials, out, partials.shape[0], ENTRIES=entries, BLOCK_P=32, BLOCK_E=block_e, ACC=acc,
        num_warps=1 if interpreter else 4)
    return out
