"""Input checks of the public op functions; each error names the op, the argument and what was
expected, e.g. ``fastmatte.gather_tiles: image must be 4-D [B, C, H, W], got [3, 1080, 1920]``.

Int arguments are checked before they reach an op's schema: a Python or NumPy integer (never a
bool), in the range the kernels can take, e.g. ``capacity must be an int in [0, 2**31 - 1]``
(tile rows are int32).

Absurd sizes are refused before anything is allocated (csrc/checks.h enforces the same in the
kernels, which torch.ops.fastmatte.* reaches directly). Absurd means either
- a geometric argument beyond what it measures: a gather halo wider than the image on both
  axes (halo > max(H, W)), whose windows would hold little but repeated border pixels, or
- an output (or per-window work matrix) of more than MAX_OUTPUT_BYTES = 2**40 bytes (1 TiB):
  more than any single accelerator or ordinary host holds, and over ten times the largest real
  workload (4K frames, batch 64, every tile selected, halo 8, fp32: a 76 GB gather).
Anything below that is left to the allocator, whose out-of-memory error says how much was asked.
"""
import math
import numbers

import torch

INT32_MAX = 2 ** 31 - 1
# window_attention's window and the CRA attention ops' search_range r index bias tables of
# (2r-1)^2 (+1) rows in int32 arithmetic: r <= 23170 keeps (2r-1)^2 + 1 below 2**31.
MAX_TABLE_RANGE = 23170
MAX_OUTPUT_BYTES = 2 ** 40
# The floating dtypes of the ops whose kernels dispatch on all four.
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def fail(op: str, message: str):
    raise ValueError(f"fastmatte.{op}: {message}")


def check_tensor(op, name, t, rank=None, layout="", floating=False, dtype=None, device=None):
    """Type, rank, dtype and device of one tensor argument."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastmatte.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if rank is not None and t.dim() != rank:
        fail(op, f"{name} must be {rank}-D {layout}, got {list(t.shape)}")
    if floating and not t.is_floating_point():
        fail(op, f"{name} must be a floating-point tensor, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        fail(op, f"{name} must be {dtype}, got {t.dtype}")
    if device is not None and t.device != device:
        fail(op, f"{name} is on {t.device} but the other inputs are on {device}")


def check_int(op, name, value, minimum, maximum=None, bound=None):
    """An int argument in [minimum, maximum] (no upper limit when maximum is None): a Python or
    NumPy integer, not a bool (else TypeError), in range (else ValueError). `bound` names the
    maximum when other arguments make it, e.g. "max(H, W)" (the error says "max(H, W) = 1920").
    Returns the value as a Python int, which is what a schema int takes."""
    def expected():  # only formatted on failure: maximum may be symbolic under torch.compile
        if maximum is None:
            return f"an int >= {minimum}"
        limit = "2**31 - 1" if maximum == INT32_MAX else maximum
        return f"an int in [{minimum}, {limit if bound is None else f'{bound} = {maximum}'}]"

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = type(value).__name__
        raise TypeError(f"fastmatte.{op}: {name} must be {expected()}, got {value!r} ({kind})")
    if value < minimum or maximum is not None and value > maximum:
        fail(op, f"{name} must be {expected()}, got {value}")
    return value if isinstance(value, int) else int(value)


def check_output_size(op, name, shape, dtype):
    """Refuses a tensor of `shape` and `dtype` that an op would make when it needs more than
    MAX_OUTPUT_BYTES (the module docstring says why), before anything is allocated."""
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_OUTPUT_BYTES:
        fail(op, f"{name} would be {list(shape)} {dtype} = {size / 2 ** 30:.1f} GiB, more than the "
                 f"{MAX_OUTPUT_BYTES // 2 ** 30} GiB (2**40 bytes) an op may allocate for one tensor")


def check_selection(op, tiles, count, device):
    """The (tiles[capacity, 3], count[1]) pair made by select_tiles."""
    check_tensor(op, "tiles", tiles, rank=2, layout="[capacity, 3]", dtype=torch.int32, device=device)
    if tiles.shape[1] != 3:
        fail(op, f"tiles must be [capacity, 3] (b, ty, tx), got {list(tiles.shape)}")
    check_tensor(op, "count", count, rank=1, layout="[1]", dtype=torch.int32, device=device)
    if count.numel() != 1:
        fail(op, f"count must hold one element, got {list(count.shape)}")


def check_query(op, name, q):
    """A query tensor [N, heads, D] of an attention op; returns (N, heads, D)."""
    check_tensor(op, name, q, rank=3, layout="[N, heads, D]", floating=True)
    n, heads, dim = q.shape
    if dim == 0:
        fail(op, f"{name} must be [N, heads, D] with D >= 1, got {list(q.shape)}")
    return n, heads, dim


def check_groups(op, query_name, q, tiles, nbr, bias_table, search_range):
    """What both CRA attention ops take besides q/k/v: tiles [N, 3], nbr [N, K] and the
    bias table [(2s-1)^2+1, heads], checked against the query q [N, heads, D] (named query_name).
    Returns search_range as a Python int."""
    n, heads = q.shape[:2]
    check_tensor(op, "nbr", nbr, rank=2, layout="[N, K]", dtype=torch.int32, device=q.device)
    if nbr.shape[0] != n:
        fail(op, f"nbr must be [N={n}, K] (N = {query_name}.shape[0]), got {list(nbr.shape)}")
    check_tensor(op, "tiles", tiles, rank=2, layout="[N, 3]", dtype=torch.int32, device=q.device)
    if tiles.shape != (n, 3):
        fail(op, f"tiles must be [N={n}, 3] (b, ty, tx), got {list(tiles.shape)}")
    search_range = check_int(op, "search_range", search_range, 1, MAX_TABLE_RANGE)
    table = (2 * search_range - 1) ** 2 + 1
    check_tensor(op, "bias_table", bias_table, dtype=q.dtype, device=q.device)
    if bias_table.shape != (table, heads):
        fail(op, f"bias_table must be [(2*search_range-1)^2+1, heads] = [{table}, {heads}] for "
                 f"search_range={search_range}, got {list(bias_table.shape)}")
    return search_range
