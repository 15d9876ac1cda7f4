"""fastmatte.ops.knn_attention: CRA's first attention block (full attention in each group)."""
import torch

from fastmatte import reference
from fastmatte.ops._attention_registration import register_attention
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import check_groups, check_output_size, check_query, check_tensor, fail
from fastmatte.reference.relative_position import check_bucketing

BACKENDS = OpBackends("knn_attention", triton=True)


def knn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tiles: torch.Tensor,
                  nbr: torch.Tensor, bias_table: torch.Tensor, search_range: int, *,
                  bucketing: str = "per_axis", backend=None) -> torch.Tensor:
    """Full attention among the k+1 tiles of every group, with a relative-position bias.

    q, k, v:    [N, heads, D] float (fp32, fp64, fp16 or bf16), one token per tile row.
    tiles:      [N, 3] int32 rows (b, ty, tx), as made by select_tiles (N = its capacity).
    nbr:        [N, K] int32 neighbour rows in [-1, N), as made by knn_tiles; -1 = missing.
    bias_table: [(2*search_range-1)^2 + 1, heads], q's dtype: relative-position bias.
    search_range: int in [1, 23170] (the table's rows are int32 indices).
    bucketing:  "per_axis" (the paper's table) or "official" (the authors' code and checkpoints):
                which offsets share the last table entry, see below.

    Returns out [N, K+1, heads, D] in q's dtype. Group i is g = [i] + nbr[i]; for each valid
    member a of group i:

        out[i, a, h] = sum_b softmax_b(q[g_a, h] . k[g_b, h] / sqrt(D)
                                       + bias_table[rel(tiles[g_a], tiles[g_b]), h]) v[g_b, h]

    over the valid members b. A member is valid when its row is >= 0 and its group's center
    is (tiles[i, 0] >= 0); rows of invalid members are zero. rel is
    fastmatte.reference.relative_position_index with this bucketing (key tile minus query tile;
    per_axis: offsets beyond search_range-1 on either axis share the last table entry; official:
    those whose flat index (dy+s-1)*(2s-1)+(dx+s-1) is outside the table do). Accumulates in
    fp32 (fp64 for fp64); never builds gathered K/V copies or a bias tensor. Differentiable in q, k, v and
    bias_table; gradients are sums over the groups a tile belongs to: the CPU kernel adds in a
    fixed order, the Triton kernel uses fp32 atomics unless
    torch.use_deterministic_algorithms(True) is on, then fixed-order sums.
    nbr values are validated on the CPU only. Non-contiguous inputs are copied. An out of more
    than 2**40 bytes (1 TiB) is refused before anything is allocated.
    """
    search_range = _check_inputs(q, k, v, tiles, nbr, bias_table, search_range, bucketing)
    choice = BACKENDS.resolve(q.device, backend)
    if choice == "torch":
        return reference.knn_attention(q, k, v, tiles, nbr, bias_table, search_range, bucketing)
    ops = torch.ops.fastmatte
    run = ops.knn_attention_triton if choice == "triton" else ops.knn_attention
    return run(q.contiguous(), k.contiguous(), v.contiguous(), tiles.contiguous(), nbr.contiguous(),
               bias_table.contiguous(), search_range, bucketing)


def _check_inputs(q, k, v, tiles, nbr, bias_table, search_range, bucketing):
    """Every argument of knn_attention; returns search_range as a Python int."""
    op = "knn_attention"
    check_bucketing(f"fastmatte.{op}", bucketing)
    n, heads, dim = check_query(op, "q", q)
    for name, t in (("k", k), ("v", v)):
        check_tensor(op, name, t, rank=3, layout="[N, heads, D]", dtype=q.dtype, device=q.device)
        if t.shape != q.shape:
            fail(op, f"{name} must have q's shape {list(q.shape)}, got {list(t.shape)}")
    search_range = check_groups(op, "q", q, tiles, nbr, bias_table, search_range)
    check_output_size(op, "out", (n, nbr.shape[1] + 1, heads, dim), q.dtype)
    return search_range


@torch.library.custom_op("fastmatte::knn_attention_triton", mutates_args=())
def _knn_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tiles: torch.Tensor,
                          nbr: torch.Tensor, bias_table: torch.Tensor, search_range: int,
                          bucketing: str = "per_axis") -> torch.Tensor:
    _check_inputs(q, k, v, tiles, nbr, bias_table, search_range, bucketing)  # called directly too
    # Imported here: TRITON_INTERPRET must be set before the kernel's triton.jit runs.
    from fastmatte.kernels.knn_attention import knn_attention_forward

    return knn_attention_forward(q, k, v, tiles, nbr, bias_table, search_range, bucketing)


@torch.library.custom_op("fastmatte::knn_attention_backward_triton", mutates_args=())
def _knn_attention_backward_triton(
        grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        tiles: torch.Tensor, nbr: torch.Tensor, bias_table: torch.Tensor, search_range: int,
        bucketing: str, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_bucketing("fastmatte.knn_attention_backward_triton", bucketing)  # else silently per_axis
    from fastmatte.kernels.knn_attention import knn_attention_backward

    return knn_attention_backward(grad_out, q, k, v, tiles, nbr, bias_table, search_range,
                                  bucketing, deterministic)


def _forward_fake(q, k, v, tiles, nbr, bias_table, search_range, bucketing="per_axis"):
    return q.new_empty((q.shape[0], nbr.shape[1] + 1, q.shape[1], q.shape[2]))


register_attention("knn_attention", _forward_fake)
