"""fastmatte.ops.group_attention: CRA's second attention block (the center query of each group)."""
import torch

from fastmatte import reference
from fastmatte.ops._attention_registration import register_attention
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import check_groups, check_query, check_tensor, fail
from fastmatte.reference.relative_position import check_bucketing

BACKENDS = OpBackends("group_attention", triton=True)


def group_attention(q0: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tiles: torch.Tensor,
                    nbr: torch.Tensor, bias_table: torch.Tensor, search_range: int, *,
                    bucketing: str = "per_axis", backend=None) -> torch.Tensor:
    """Attention of each group's center query over the group's own keys and values.

    q0:         [N, heads, D] float (fp32, fp64, fp16 or bf16): the center query of group i.
    k, v:       [N, K+1, heads, D], q0's dtype and device: group i's own keys/values, member 0
                being the center (e.g. rows of knn_attention's output).
    tiles:      [N, 3] int32 rows (b, ty, tx), as made by select_tiles (N = its capacity).
    nbr:        [N, K] int32 neighbour rows in [-1, N), as made by knn_tiles; -1 = missing.
    bias_table: [(2*search_range-1)^2 + 1, heads], q0's dtype: relative-position bias.
    search_range: int in [1, 23170] (the table's rows are int32 indices).
    bucketing:  "per_axis" (the paper's table) or "official" (the authors' code and checkpoints):
                which offsets share the last table entry, see below.

    Returns out [N, heads, D] in q0's dtype:

        out[i, h] = sum_b softmax_b(q0[i, h] . k[i, b, h] / sqrt(D)
                                    + bias_table[rel(tiles[i], tiles[g_b]), h]) v[i, b, h]

    over the valid members b, where g_0 = i and g_b = nbr[i, b-1]; member b >= 1 is valid
    when nbr[i, b-1] >= 0. rel is fastmatte.reference.relative_position_index with this
    bucketing (key tile minus center tile; per_axis: offsets beyond search_range-1 on either
    axis share the last table entry; official: those whose flat index (dy+s-1)*(2s-1)+(dx+s-1)
    is outside the table do).
    Rows of invalid centers (tiles[i, 0] < 0) are zero. Accumulates in fp32 (fp64 for fp64).
    Differentiable in q0, k, v and bias_table. The bias-table gradient sums over groups: the
    CPU kernel always adds in a fixed order; the Triton kernel uses fp32 atomics unless
    torch.use_deterministic_algorithms(True) is on, then a fixed-order two-pass sum.
    nbr values are validated on the CPU only. Non-contiguous inputs are copied.
    """
    search_range = _check_inputs(q0, k, v, tiles, nbr, bias_table, search_range, bucketing)
    choice = BACKENDS.resolve(q0.device, backend)
    if choice == "torch":
        return reference.group_attention(q0, k, v, tiles, nbr, bias_table, search_range, bucketing)
    if choice == "triton":
        run = torch.ops.fastmatte.group_attention_triton
    else:  # "cpu" or "cuda": the C++ op dispatches on the device
        run = torch.ops.fastmatte.group_attention
    return run(q0.contiguous(), k.contiguous(), v.contiguous(), tiles.contiguous(),
               nbr.contiguous(), bias_table.contiguous(), search_range, bucketing)


def _check_inputs(q0, k, v, tiles, nbr, bias_table, search_range, bucketing):
    """Every argument of group_attention; returns search_range as a Python int."""
    op = "group_attention"
    check_bucketing(f"fastmatte.{op}", bucketing)
    n, heads, dim = check_query(op, "q0", q0)
    search_range = check_groups(op, "q0", q0, tiles, nbr, bias_table, search_range)
    members = nbr.shape[1] + 1
    for name, t in (("k", k), ("v", v)):
        check_tensor(op, name, t, rank=4, layout="[N, K+1, heads, D]", dtype=q0.dtype, device=q0.device)
        if t.shape != (n, members, heads, dim):
            fail(op, f"{name} must be [N, K+1, heads, D] = {[n, members, heads, dim]} "
                     f"(K = nbr.shape[1]), got {list(t.shape)}")
    return search_range


@torch.library.custom_op("fastmatte::group_attention_triton", mutates_args=())
def _group_attention_triton(q0: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            tiles: torch.Tensor, nbr: torch.Tensor, bias_table: torch.Tensor,
                            search_range: int, bucketing: str = "per_axis") -> torch.Tensor:
    _check_inputs(q0, k, v, tiles, nbr, bias_table, search_range, bucketing)  # called directly too
    # Imported here: TRITON_INTERPRET must be set before the kernel's triton.jit runs.
    from fastmatte.kernels.group_attention import group_attention_forward

    return group_attention_forward(q0, k, v, tiles, nbr, bias_table, search_range, bucketing)


@torch.library.custom_op("fastmatte::group_attention_backward_triton", mutates_args=())
def _group_attention_backward_triton(
        grad_out: torch.Tensor, q0: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        tiles: torch.Tensor, nbr: torch.Tensor, bias_table: torch.Tensor, search_range: int,
        bucketing: str, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_bucketing("fastmatte.group_attention_backward_triton", bucketing)  # else silently per_axis
    from fastmatte.kernels.group_attention import group_attention_backward

    return group_attention_backward(grad_out, q0, k, v, tiles, nbr, bias_table, search_range,
                                    bucketing, deterministic)


def _forward_fake(q0, k, v, tiles, nbr, bias_table, search_range, bucketing="per_axis"):
    return torch.empty_like(q0)


register_attention("group_attention", _forward_fake)
