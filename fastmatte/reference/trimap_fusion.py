"""Reference of fastmatte.ops.trimap_fusion: PP-Matting's semantic-detail fusion, eager."""
import torch
import torch.nn.functional as F


def trimap_fusion(semantic: torch.Tensor, detail: torch.Tensor, fg_class: int = 0,
                  unknown_class: int = 1) -> torch.Tensor:
    """semantic [B, 3, h, w] and detail [B, 1, H, W] (or [B, N, 3, h, w] and [B, N, 1, H, W]) ->
    alpha like detail: the semantic resized to H x W (unless it already is), its argmax over the
    3 classes, then detail where that is unknown_class, 1 where it is fg_class, else 0."""
    if semantic.dim() == 5:
        alpha = trimap_fusion(semantic.flatten(0, 1), detail.flatten(0, 1), fg_class, unknown_class)
        return alpha.view(detail.shape)
    if semantic.shape[-2:] != detail.shape[-2:]:
        semantic = F.interpolate(semantic, size=detail.shape[-2:], mode="bilinear", align_corners=False)
    index = semantic.argmax(dim=1, keepdim=True)
    return torch.where(index == unknown_class, detail, (index == fg_class).to(detail.dtype))
