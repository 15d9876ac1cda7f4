"""Input checks of the public op functions; each error names the op, the argument and what was
expected, e.g. ``fastmatte.gather_tiles: image must be 4-D [B, C, H, W], got [3, 1080, 1920]``."""
import torch


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


def check_int(op, name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"fastmatte.{op}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        fail(op, f"{name} must be >= {minimum}, got {value}")


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
    bias table [(2s-1)^2+1, heads], checked against the query q [N, heads, D] (named query_name)."""
    n, heads = q.shape[:2]
    check_tensor(op, "nbr", nbr, rank=2, layout="[N, K]", dtype=torch.int32, device=q.device)
    if nbr.shape[0] != n:
        fail(op, f"nbr must be [N={n}, K] (N = {query_name}.shape[0]), got {list(nbr.shape)}")
    check_tensor(op, "tiles", tiles, rank=2, layout="[N, 3]", dtype=torch.int32, device=q.device)
    if tiles.shape != (n, 3):
        fail(op, f"tiles must be [N={n}, 3] (b, ty, tx), got {list(tiles.shape)}")
    check_int(op, "search_range", search_range, 1)
    table = (2 * search_range - 1) ** 2 + 1
    check_tensor(op, "bias_table", bias_table, dtype=q.dtype, device=q.device)
    if bias_table.shape != (table, heads):
        fail(op, f"bias_table must be [(2*search_range-1)^2+1, heads] = [{table}, {heads}] for "
                 f"search_range={search_range}, got {list(bias_table.shape)}")


def check_metric_inputs(op, pred, gt, mask):
    """pred and gt [B, H, W] float32/float64 of one dtype and device; mask [B, H, W] bool or None.
    (The user-facing fastmatte.metrics functions convert NumPy, uint8 and [B, 1, H, W] first.)"""
    check_tensor(op, "pred", pred, rank=3, layout="[B, H, W]")
    if pred.dtype not in (torch.float32, torch.float64):
        fail(op, f"pred must be float32 or float64, got {pred.dtype}")
    check_tensor(op, "gt", gt, dtype=pred.dtype, device=pred.device)
    if gt.shape != pred.shape:
        fail(op, f"gt must have pred's size {list(pred.shape)}, got {list(gt.shape)}")
    if pred.numel() >= 2 ** 31:
        fail(op, f"pred must have fewer than 2^31 pixels, got B*H*W = {pred.numel()}")
    if mask is not None:
        check_tensor(op, "mask", mask, dtype=torch.bool, device=pred.device)
        if mask.shape != pred.shape:
            fail(op, f"mask must have pred's size {list(pred.shape)}, got {list(mask.shape)}")
