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
