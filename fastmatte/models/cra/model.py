"""CRAMatting (Zhong & Zharkov, "Lightweight Portrait Matting via Regional Attention and
Refinement", WACV 2024): trimap-free HD/4K portrait matting in two stages."""
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import load_backbone_weights
from fastmatte.models.cra.decoder import CoarseDecoder
from fastmatte.models.cra.refiner import TILE, TileRefiner
from fastmatte.models.image_check import check_image
from fastmatte.ops import scatter_tiles, select_tiles
from fastmatte.ops._backend import check_backend

STRIDE = 16  # the low-resolution network's total reduction; the image is padded to a multiple
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the backbone's input normalization (ImageNet weights)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, token_dim=16, attention_heads=2,
            head_dim=8, decoder_width=16, refiner_channels=(4, 8))  # about 28k parameters


class CRAMatting(nn.Module):
    """The two-stage CRA model; the defaults are the paper's.

    Stage 1, at 1/16: a Swin Transformer (embed_dim, depths, num_heads, window_size) whose patch
    embedding reduces the image x patch_size, after an average pooling x downsample
    (downsample * patch_size must be 16: patch 16, or the paper's "downsample x2 + patch 8"),
    then CoarseDecoder: 4 channels at 1/8 = coarse alpha (sigmoid) + 3 trimap logits
    (0 foreground, 1 unknown, 2 background).
    Stage 2: the tiles whose trimap argmax is "unknown" (at most `tile_capacity` of them, the
    most uncertain first) are refined by TileRefiner (patch encoder, CrossRegionAttention with k
    neighbours and search range, patch decoder) and pasted into the upsampled coarse alpha.

    tile_capacity: an int (that many tiles per batch) or a float in (0, 1] (that fraction of
    the batch's 1/8 grid, rounded up); fixed per input size, so nothing waits on the host.

    forward(image, trimap=None, backend=None):
      image: float [B, 3, H, W] in [0, 1], any H, W >= 1 (fp32/fp16/bf16, the model's dtype).
        It is padded bottom/right by edge replication to Hp = ceil(H/16)*16, Wp likewise.
      trimap: optional logits [B, 3, Hp/8, Wp/8] that choose the tiles instead of the predicted
        trimap (ground truth in training, a fixed band in benchmarks).
      backend: None = the fastmatte operators; "torch" = each replaced by its eager reference;
        "cpu", "cuda" or "triton" is forced on every op (one without that kernel says so).
    Returns a dict: alpha [B, 1, H, W] in [0, 1]; coarse_alpha [B, 1, Hp/8, Wp/8] in [0, 1];
    trimap [B, 3, Hp/8, Wp/8] logits (the prediction, also when a trimap was given);
    selection: the fastmatte.TileSelection that was refined (count stays on the device).
    """

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                 patch_size=16, downsample=1, tile_capacity=0.1, k=8, search_range=4, token_dim=128,
                 attention_heads=8, head_dim=16, decoder_width=128, refiner_channels=(16, 32)):
        super().__init__()
        if downsample not in (1, 2, 4, 8, 16) or downsample * patch_size != STRIDE:
            raise ValueError(f"CRAMatting: downsample * patch_size must be {STRIDE} (e.g. 1 and 16, or "
                             f"2 and 8), got downsample={downsample}, patch_size={patch_size}")
        self.tile_capacity = _check_capacity(tile_capacity)
        # The fraction as written (0.1 is 1/10, not the nearest double): 10% of 32640 tiles is 3264.
        self._capacity_ratio = Fraction(str(tile_capacity)).as_integer_ratio()
        self.downsample = downsample
        self.backbone = SwinTransformer(3, embed_dim, depths, num_heads, window_size, patch_size)
        self.decoder = CoarseDecoder(self.backbone.out_channels, decoder_width)
        self.refiner = TileRefiner(token_dim, attention_heads, head_dim, k, search_range, refiner_channels)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def tiny(cls, **overrides):
        """A very small configuration (TINY, about 28k parameters) for tests and quick experiments."""
        return cls(**(TINY | overrides))

    def load_backbone(self, path, strict=True):
        """Initialize the backbone from ImageNet Swin weights (e.g. swin_tiny_patch4_window7_224.pth,
        a local file): see fastmatte.models.backbones.swin_weights.load_backbone_weights, which resamples
        the 4x4 patch kernel to this model's patch. Returns its BackboneLoadReport."""
        return load_backbone_weights(self.backbone, path, strict=strict)

    def capacity(self, batch: int, grid_height: int, grid_width: int) -> int:
        """How many tiles are refined for a batch whose 1/8 grid is grid_height x grid_width."""
        if isinstance(self.tile_capacity, int):
            return self.tile_capacity
        numerator, denominator = self._capacity_ratio
        return -(-numerator * batch * grid_height * grid_width // denominator)  # integer ceiling

    def forward(self, image, trimap=None, backend=None):
        check_backend("CRAMatting", backend)
        check_image("CRAMatting", image, self.mean)
        B, _, H, W = image.shape
        padded = F.pad(image, (0, -W % STRIDE, 0, -H % STRIDE), mode="replicate")
        grid = (padded.shape[-2] // TILE, padded.shape[-1] // TILE)
        if trimap is not None:
            _check_trimap(trimap, (B, 3, *grid), image)

        low = F.avg_pool2d(padded, self.downsample) if self.downsample > 1 else padded
        coarse = self.decoder(self.backbone((low - self.mean) / self.std, backend))
        coarse_alpha, predicted = torch.sigmoid(coarse[:, :1]), coarse[:, 1:]

        chooser = predicted.detach() if trimap is None else trimap
        selection = select_tiles(chooser, self.capacity(B, *grid), backend=backend)
        rows = _selected_rows(selection, padded)
        refined = self.refiner(padded, coarse_alpha, rows, backend=backend)
        alpha = scatter_tiles(coarse_alpha, refined, rows.tiles, rows.count, rows.tile_map, backend=backend)
        return {"alpha": alpha[:, :, :H, :W], "coarse_alpha": coarse_alpha, "trimap": predicted,
                "selection": selection}

    def predict(self, image, backend=None):
        """The inference recipe: alpha [B, 1, H, W] of `image` (float [B, 3, H, W] in [0, 1], any
        size). The paper gives no resize rule, so this is forward's alpha at the input's size.
        Gradients follow the caller's grad mode (Matter calls it under torch.no_grad)."""
        return self(image, backend=backend)["alpha"]


def _selected_rows(selection, image):
    """The selection the refiner runs on. On the CPU it is cut to its `count` rows, so the
    refiner's layers skip the padding rows (reading the count costs nothing there; the padding is
    about a quarter of the rows at HD). Elsewhere it is left at its fixed capacity: on a GPU that
    keeps the forward free of host syncs and capturable in a CUDA graph, and under torch.compile
    it keeps the graph whole. The output is the same either way: rows past count are ignored."""
    if image.device.type != "cpu" or torch.compiler.is_compiling():
        return selection
    return selection._replace(tiles=selection.tiles[:int(selection.count)])


def _check_capacity(tile_capacity):
    if isinstance(tile_capacity, bool) or not isinstance(tile_capacity, (int, float)):
        raise TypeError(f"CRAMatting: tile_capacity must be an int (tiles) or a float in (0, 1] "
                        f"(fraction of the 1/8 grid), got {tile_capacity!r}")
    if isinstance(tile_capacity, int) and tile_capacity < 0 or \
            isinstance(tile_capacity, float) and not 0.0 < tile_capacity <= 1.0:
        raise ValueError(f"CRAMatting: tile_capacity must be an int >= 0 or a float in (0, 1], "
                         f"got {tile_capacity!r}")
    return tile_capacity


def _check_trimap(trimap, shape, image):
    if not torch.is_tensor(trimap) or tuple(trimap.shape) != shape or not trimap.is_floating_point():
        got = f"{trimap.dtype} {list(trimap.shape)}" if torch.is_tensor(trimap) else type(trimap).__name__
        raise ValueError(f"CRAMatting: trimap must be float logits [B, 3, ceil(H/16)*2, ceil(W/16)*2] = "
                         f"{list(shape)} for this image, got {got}")
    if trimap.device != image.device:
        raise ValueError(f"CRAMatting: trimap is on {trimap.device}, the image on {image.device}")
