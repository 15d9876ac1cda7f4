"""The training loss of CRAMatting: coarse-stage supervision on the 1/8 tile grid plus the
refined matte's alpha, Laplacian and composition losses."""
from fastmatte.losses.laplacian import laplacian_loss
from fastmatte.losses.pixel import alpha_l1_loss, composition_loss
from fastmatte.losses.trimap import coarse_alpha_target, coarse_trimap_target, trimap_loss
from fastmatte.ops._checks import check_tensor, fail

CRA_LOSS_WEIGHTS = {"coarse_alpha": 1.0, "trimap": 1.0, "alpha": 1.0, "laplacian": 1.0, "composition": 1.0}
"""Default weight of each part of cra_loss (fastmatte's choice: every part weighs 1)."""


def cra_loss(outputs, gt_alpha, fg=None, bg=None, image=None, weights=None, trimap_kernel_size=5,
             laplacian_levels=5):
    """The weighted sum of CRAMatting's losses, and its parts.

    outputs: the dict CRAMatting returns: alpha [B, 1, H, W], coarse_alpha [B, 1, h, w] and
    trimap logits [B, 3, h, w] on the 1/8 grid of the image padded (bottom/right) to a multiple
    of 16, h = ceil(H/16) * 2. gt_alpha: float [B, 1, H, W] in 0..1. The coarse targets are made
    on that grid from gt padded by edge replication as the model pads the image
    (coarse_alpha_target, coarse_trimap_target).
    Parts (unweighted, each a 0-d tensor):
      coarse_alpha  alpha_l1_loss(coarse_alpha, area-downsampled gt)
      trimap        trimap_loss(trimap, coarse_trimap_target(gt, kernel_size=trimap_kernel_size))
      alpha         alpha_l1_loss(alpha, gt) over the whole image
      laplacian     laplacian_loss(alpha, gt, laplacian_levels)
      composition   composition_loss(alpha, gt, fg, bg, image): only when fg and bg are given
    weights: {part: weight} overriding CRA_LOSS_WEIGHTS (all 1); unknown names are refused.
    Returns (total, {part: value}); total = sum of weight * part over the parts computed.
    """
    op = "losses.cra_loss"
    if not isinstance(outputs, dict) or not {"alpha", "coarse_alpha", "trimap"} <= outputs.keys():
        raise TypeError(f"fastmatte.{op}: outputs must be CRAMatting's dict with alpha, coarse_alpha "
                        f"and trimap, got {type(outputs).__name__}")
    unknown = set(weights or {}) - CRA_LOSS_WEIGHTS.keys()
    if unknown:
        fail(op, f"weights has unknown parts {sorted(unknown)}; the parts are {list(CRA_LOSS_WEIGHTS)}")
    if (fg is None) != (bg is None):
        fail(op, "fg and bg go together: give both (for the composition loss) or neither")
    weights = CRA_LOSS_WEIGHTS | (weights or {})
    alpha, coarse, trimap = outputs["alpha"], outputs["coarse_alpha"], outputs["trimap"]
    check_tensor(op, "outputs['coarse_alpha']", coarse, rank=4, layout="[B, 1, h, w]")
    check_tensor(op, "outputs['trimap']", trimap, rank=4, layout="[B, 3, h, w]")
    if trimap.shape[-2:] != coarse.shape[-2:]:
        fail(op, f"outputs['trimap'] {list(trimap.shape)} and outputs['coarse_alpha'] "
                 f"{list(coarse.shape)} must be on one grid")
    grid = tuple(coarse.shape[-2:])
    coarse_classes = coarse_trimap_target(gt_alpha, grid=grid, kernel_size=trimap_kernel_size)
    parts = {
        "coarse_alpha": alpha_l1_loss(coarse, coarse_alpha_target(gt_alpha, grid=grid)),
        "trimap": trimap_loss(trimap, coarse_classes),
        "alpha": alpha_l1_loss(alpha, gt_alpha),
        "laplacian": laplacian_loss(alpha, gt_alpha, laplacian_levels),
    }
    if fg is not None:
        parts["composition"] = composition_loss(alpha, gt_alpha, fg, bg, image)
    total = sum(weights[name] * value for name, value in parts.items())
    return total, parts
