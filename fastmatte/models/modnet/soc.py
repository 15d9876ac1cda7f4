"""SOC, MODNet's self-supervised sub-objectives consistency: adapting a trained MODNet to unlabeled
images (e.g. the frames of one video) as ZHKKKe/MODNet's src/trainer.py (soc_adaptation_iter) does.

Usage, as the official example: Adam(lr=1e-5, betas=(0.9, 0.99)), batch 1; at the start of each
epoch `backup = backup_copy(model)`, then `soc_step(model, backup, optimizer, image)` per image.
SOC only makes sense for a converged model (trained with modnet_loss first).
"""
import copy

import torch
from torch import nn

from fastmatte.losses.modnet import modnet_soc_loss


def freeze_norm(model):
    """Every BatchNorm and InstanceNorm of model (torch's _NormBase) to eval mode, the official
    MODNet.freeze_norm: BatchNorm normalizes with its running statistics and stops updating them
    (its scale and shift still train); InstanceNorm without running statistics is unaffected.
    The rest of the model keeps its mode. Returns model."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.eval()
    return model


def backup_copy(model):
    """A frozen copy of model for soc_step's backup: deep copy, eval mode, no gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def soc_step(model, backup_model, optimizer, image, semantic_scale=100.0, detail_scale=1.0, backend=None):
    """One SOC adaptation step on an unlabeled batch, as soc_adaptation_iter does it.

    model: the MODNet being adapted; left in train mode with its norms frozen (freeze_norm), so
    BatchNorm running statistics never change. backup_model: a frozen copy made before adaptation
    (backup_copy); put in eval mode and run without gradients. optimizer: over model's parameters.
    image: float [B, 3, H, W] RGB in [0, 1] (H, W multiples of 32), the model's input.
    backend: passed to both models' forward.
    The step: zero the gradients; model(image) gives semantic [B, 1, H/16, W/16], detail and alpha
    [B, 1, H, W]; the backup gives its detail and alpha; modnet_soc_loss compares them:
      semantic consistency  the semantic head against blur(alpha downsampled by 16) and that map
                            against the semantic head, each target detached and zeroed below 0.01
                            (weight semantic_scale, official 100)
      detail consistency    L1 of detail and of alpha against the backup's, averaged over the
                            boundary of the predicted foreground (modnet_soc_boundary: alpha > 0.1
                            and the upsampled semantic > 0.1, dilated minus eroded by a window of
                            5% of the mean image side) (weight detail_scale, official 1)
    then backward and one optimizer step. (The official code notes that the paper's formulas,
    which compare alpha with the semantic and detail outputs instead, give similar results.)
    Returns {"total", "semantic", "detail"}: detached 0-d tensors from before the step; semantic and
    detail unweighted, total = semantic_scale * semantic + detail_scale * detail.
    """
    backup_model.eval()
    freeze_norm(model.train())
    optimizer.zero_grad()
    outputs = model(image, aux=True, backend=backend)
    with torch.no_grad():
        backup = backup_model(image, aux=True, backend=backend)
    total, parts = modnet_soc_loss(outputs, backup, semantic_scale, detail_scale)
    total.backward()
    optimizer.step()
    return {"total": total.detach(), **{name: value.detach() for name, value in parts.items()}}
