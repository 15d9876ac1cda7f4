"""Training losses of CRA, MODNet and PP-Matting as their official trainers compute them, and their targets.

- ``alpha_l1_loss``, ``composition_loss``: smooth L1 sqrt(d^2 + eps^2), eps = 1e-3 by default.
- ``laplacian_loss``: L1 between Laplacian pyramids (OpenCV's pyrDown / pyrUp), level weights 2^i.
- ``trimap_from_alpha``: a trimap made from alpha by square-window morphology (classes 0
  foreground, 1 unknown, 2 background).
- ``focal_loss``: softmax focal loss with soft targets and class weights.
- ``cra_loss``: CRAMatting's loss as yataoz/lightweight_portrait_matting's trainer computes it
  (weights ``CRA_LOSS_WEIGHTS``), from its targets ``cra_trimap`` (classes 0 background, 1 unknown,
  2 foreground), ``cra_seg_target``, ``cra_trimap_target``, ``cra_class_weights``, and
  ``cra_laplacian_loss``; ``cra_weight_penalty``: its L2 regularizer (``CRA_WEIGHT_DECAY``).
- ``modnet_loss``: MODNet's supervised loss as ZHKKKe/MODNet's trainer computes it (semantic L2
  against ``modnet_semantic_target``, detail L1 in the boundary (``boundary_from_alpha`` or a
  trimap), matte L1 + composition; weights ``MODNET_LOSS_WEIGHTS``); ``modnet_soc_loss``: its
  self-supervised SOC consistency, in the region ``modnet_soc_boundary``.
- ``e2ehim_loss``: E2E-HIM's set loss over its instance queries (weights ``E2EHIM_LOSS_WEIGHTS``):
  ``e2ehim_matching`` (Hungarian matching on ``e2ehim_matching_costs``, class + focal + dice,
  weights ``E2EHIM_MATCHING_WEIGHTS``), then a classification cross entropy with a down-weighted
  no-object class (``E2EHIM_NO_OBJECT_WEIGHT``), mask focal + dice, trimap cross entropy and
  alpha L1 in the unknown region on the matched pairs, against ``e2ehim_trimap`` (classes 0
  background, 1 unknown, 2 foreground). The released code has no training code and the paper's
  loss section was not available: the terms and weights are MaskFormer's (e2ehim.py says which).
- ``ppmatting_loss``, ``ppmattingv2_loss``: PP-Matting's and PP-MattingV2's losses as PaddleSeg's
  Matting code computes them (weights ``PPMATTING_LOSS_WEIGHTS``), from ``mrsd_loss`` (sqrt(d^2 +
  1e-6)), ``gradient_loss`` (L1 between Sobel magnitudes) and ``ppmatting_semantic_target``.

Every loss computes in float32 (float64 for float64 inputs) and returns a 0-d tensor; masks are
per-pixel weights, and an empty mask gives 0 with a zero gradient, never NaN.
"""
from fastmatte.losses.cra import (CRA_LOSS_WEIGHTS, CRA_WEIGHT_DECAY, cra_class_weights, cra_laplacian_loss,
                                  cra_loss, cra_seg_target, cra_trimap, cra_trimap_target, cra_weight_penalty)
from fastmatte.losses.e2ehim import (E2EHIM_LOSS_WEIGHTS, E2EHIM_MATCHING_WEIGHTS, E2EHIM_NO_OBJECT_WEIGHT,
                                     e2ehim_loss, e2ehim_matching, e2ehim_matching_costs, e2ehim_trimap)
from fastmatte.losses.focal import focal_loss
from fastmatte.losses.laplacian import laplacian_loss
from fastmatte.losses.modnet import (MODNET_LOSS_WEIGHTS, boundary_from_alpha, modnet_loss,
                                     modnet_semantic_target, modnet_soc_boundary, modnet_soc_loss)
from fastmatte.losses.pixel import alpha_l1_loss, composition_loss
from fastmatte.losses.ppmatting import (PPMATTING_LOSS_WEIGHTS, gradient_loss, mrsd_loss, ppmatting_loss,
                                        ppmatting_semantic_target, ppmattingv2_loss)
from fastmatte.losses.trimap import BACKGROUND, FOREGROUND, UNKNOWN, trimap_from_alpha

__all__ = ["BACKGROUND", "CRA_LOSS_WEIGHTS", "CRA_WEIGHT_DECAY", "E2EHIM_LOSS_WEIGHTS",
           "E2EHIM_MATCHING_WEIGHTS", "E2EHIM_NO_OBJECT_WEIGHT", "FOREGROUND", "MODNET_LOSS_WEIGHTS",
           "PPMATTING_LOSS_WEIGHTS", "UNKNOWN", "alpha_l1_loss", "boundary_from_alpha", "composition_loss",
           "cra_class_weights", "cra_laplacian_loss", "cra_loss", "cra_seg_target", "cra_trimap",
           "cra_trimap_target", "cra_weight_penalty", "e2ehim_loss", "e2ehim_matching",
           "e2ehim_matching_costs", "e2ehim_trimap", "focal_loss", "gradient_loss", "laplacian_loss",
           "modnet_loss", "modnet_semantic_target", "modnet_soc_boundary", "modnet_soc_loss", "mrsd_loss",
           "ppmatting_loss", "ppmatting_semantic_target", "ppmattingv2_loss", "trimap_from_alpha"]
