"""Training losses of the CRA paper (Zhong & Zharkov, WACV 2024) and of MODNet, and their targets.

- ``alpha_l1_loss``, ``composition_loss``: smooth L1 sqrt(d^2 + eps^2), eps = 1e-3.
- ``laplacian_loss``: L1 between Laplacian pyramids (OpenCV's pyrDown / pyrUp), level weights 2^i.
- ``trimap_from_alpha``, ``coarse_trimap_target``, ``coarse_alpha_target``: ground truths made
  from alpha (classes 0 foreground, 1 unknown, 2 background); ``trimap_loss``: cross entropy.
- ``cra_loss``: the weighted sum for CRAMatting's outputs (weights ``CRA_LOSS_WEIGHTS``).
- ``modnet_loss``: MODNet's supervised loss as ZHKKKe/MODNet's trainer computes it (semantic L2
  against ``modnet_semantic_target``, detail L1 in the boundary (``boundary_from_alpha`` or a
  trimap), matte L1 + composition; weights ``MODNET_LOSS_WEIGHTS``); ``modnet_soc_loss``: its
  self-supervised SOC consistency, in the region ``modnet_soc_boundary``.
- ``ppmatting_loss``, ``ppmattingv2_loss``: PP-Matting's and PP-MattingV2's losses as PaddleSeg's
  Matting code computes them (weights ``PPMATTING_LOSS_WEIGHTS``), from ``mrsd_loss`` (sqrt(d^2 +
  1e-6)), ``gradient_loss`` (L1 between Sobel magnitudes) and ``ppmatting_semantic_target``.

Every loss computes in float32 (float64 for float64 inputs) and returns a 0-d tensor; masks are
per-pixel weights, and an empty mask gives 0 with a zero gradient, never NaN.
"""
from fastmatte.losses.cra import CRA_LOSS_WEIGHTS, cra_loss
from fastmatte.losses.laplacian import laplacian_loss
from fastmatte.losses.modnet import (MODNET_LOSS_WEIGHTS, boundary_from_alpha, modnet_loss,
                                     modnet_semantic_target, modnet_soc_boundary, modnet_soc_loss)
from fastmatte.losses.pixel import alpha_l1_loss, composition_loss
from fastmatte.losses.ppmatting import (PPMATTING_LOSS_WEIGHTS, gradient_loss, mrsd_loss, ppmatting_loss,
                                        ppmatting_semantic_target, ppmattingv2_loss)
from fastmatte.losses.trimap import (BACKGROUND, FOREGROUND, UNKNOWN, coarse_alpha_target,
                                     coarse_trimap_target, trimap_from_alpha, trimap_loss)

__all__ = ["BACKGROUND", "CRA_LOSS_WEIGHTS", "FOREGROUND", "MODNET_LOSS_WEIGHTS", "PPMATTING_LOSS_WEIGHTS",
           "UNKNOWN", "alpha_l1_loss", "boundary_from_alpha", "coarse_alpha_target", "coarse_trimap_target",
           "composition_loss", "cra_loss", "gradient_loss", "laplacian_loss", "modnet_loss",
           "modnet_semantic_target", "modnet_soc_boundary", "modnet_soc_loss", "mrsd_loss", "ppmatting_loss",
           "ppmatting_semantic_target", "ppmattingv2_loss", "trimap_from_alpha", "trimap_loss"]
