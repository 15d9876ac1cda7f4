"""CRAMatting: the authors' CRA (Zhong & Zharkov, "Lightweight Portrait Matting via Regional
Attention and Refinement", WACV 2024; yataoz/lightweight_portrait_matting), on fastmatte's ops."""
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.swin_weights import load_backbone_weights
from fastmatte.models.cra.decoder import CRADecoder
from fastmatte.models.cra.encoder import CRAEncoder
from fastmatte.models.cra.roi_head import HEADS, SEARCH_RANGE, ROIHead, official_neighbours
from fastmatte.models.cra.skimage_resize import resize
from fastmatte.models.image_check import check_image
from fastmatte.ops import gather_tiles, knn_tiles, scatter_tiles, select_tiles
from fastmatte.ops._backend import check_backend

CELL = 8  # the refined cells: one per pixel of the 1/8 maps
NEIGHBOURS = 8
TINY = dict(embed_dim=8, num_heads=(1, 1, 2, 2), decoder_widths=(16, 16, 8))  # tests, experiments


class CRAMatting(nn.Module):
    """The official CRA; the defaults are the released model (Swin-T, patch 16, 1/8 cells).

    Low resolution: CRAEncoder (ImageNet normalization, Swin over 16x16 patches, the stage
    outputs before merging, strides 16..128) -> CRADecoder -> trimap_heads / seg_heads at the
    last three decoder outputs, pixel-shuffled x2: logits at strides 32, 16, 8 (trimap classes
    0 background, 1 unknown, 2 foreground). seg = sigmoid, trimap = softmax of the stride-8 ones.
    Refinement: every 1/8 cell whose trimap argmax is "unknown" (select_tiles, raster order) is
    cropped from cat(image, bilinear x8 seg) (gather_tiles), refined by ROIHead with its 8
    nearest selected cells (knn_tiles; the authors' lists when an image has <= 8 cells) and
    roi_matte_head, clamped to [0, 1]; alpha = nearest x8 seg with the refined cells pasted in
    (scatter_tiles, mode="nearest").

    tile_capacity: how many cells may be refined: a float in (0, 1] (that fraction of the
    batch's 1/8 grid, rounded up) or an int. The default 1.0 refines every unknown cell, as the
    authors' adaptive sampling does; less is faster, and then the most uncertain cells win.

    forward(image, trimap=None, aux=False, backend=None):
      image: float [B, 3, H, W] in [0, 1], any H, W >= 1; padded bottom/right by edge
        replication to Hp, Wp = multiples of 128 (the authors' model takes only those; predict
        resizes instead, as their benchmark does).
      trimap: optional [B, 3, Hp/8, Wp/8] logits or one-hot (official class order) that choose
        the cells instead of the prediction (the authors' overwrite_lowres_trimap).
      backend: None = fastmatte's operators; "torch" = the authors' computation in plain
        PyTorch (every op by its eager reference); "cpu", "cuda", "triton" forced on the ops.
    Returns {"alpha" [B, 1, H, W], "selection" (fastmatte.TileSelection)}; with aux=True also
    "seg_logits" and "trimap_logits" (lists, strides 32, 16, 8, on the padded grid), "seg"
    [B, 1, Hp/8, Wp/8] and "trimap" [B, 3, Hp/8, Wp/8] (probabilities), "refined" [n, 1, 8, 8]
    (the refined cells in selection order; n = count on the CPU and for the eager twin, the
    capacity for the fused model on a GPU and under torch.compile).
    """

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), patch_size=16,
                 decoder_widths=(256, 128, 64), tile_capacity=1.0):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4 or len(decoder_widths) != 3:
            raise ValueError(f"CRAMatting: depths and num_heads need 4 stages and decoder_widths 3 "
                             f"entries, got {tuple(depths)}, {tuple(num_heads)}, {tuple(decoder_widths)}")
        if patch_size % 2 or patch_size < 2:
            raise ValueError(f"CRAMatting: patch_size must be even (its 1/16 maps are pixel-shuffled "
                             f"to 1/8 per 2 x 2), got {patch_size}")
        self.tile_capacity = _check_capacity(tile_capacity)
        self._capacity_ratio = Fraction(str(tile_capacity)).as_integer_ratio()
        self.stride = patch_size * 8
        self.rel_pos_bias_table = nn.Parameter(torch.zeros((2 * SEARCH_RANGE - 1) ** 2 + 1, HEADS))
        self.encoder = CRAEncoder(embed_dim, depths, num_heads, patch_size)
        self.decoder = CRADecoder(self.encoder.out_channels, decoder_widths)
        self.trimap_heads = nn.ModuleList(nn.Conv2d(w, 3 * 4, 1) for w in decoder_widths)
        self.seg_heads = nn.ModuleList(nn.Conv2d(w, 4, 1) for w in decoder_widths)
        self.roi_head = ROIHead()
        self.roi_matte_head = nn.Conv2d(16, 1, 1)

    @classmethod
    def tiny(cls, **overrides):
        """A small configuration (TINY: narrow encoder and decoder, the official region head)."""
        return cls(**(TINY | overrides))

    def load_backbone(self, path, strict=True):
        """Initialize the encoder's Swin from ImageNet weights (a microsoft/Swin-Transformer file such
        as swin_tiny_patch4_window7_224_22k.pth, which the authors start from), the 4x4 patch kernel
        resampled to this model's patch: fastmatte.models.load_backbone_weights. Returns its report."""
        return load_backbone_weights(self.encoder, path, strict=strict)

    def capacity(self, batch: int, grid_height: int, grid_width: int) -> int:
        """How many cells are refined for a batch whose 1/8 grid is grid_height x grid_width."""
        if isinstance(self.tile_capacity, int):
            return self.tile_capacity
        numerator, denominator = self._capacity_ratio
        return -(-numerator * batch * grid_height * grid_width // denominator)  # integer ceiling

    def forward(self, image, trimap=None, aux=False, backend=None):
        check_backend("CRAMatting", backend)
        check_image("CRAMatting", image, self.rel_pos_bias_table)
        B, _, H, W = image.shape
        padded = F.pad(image, (0, -W % self.stride, 0, -H % self.stride), mode="replicate")
        grid = (padded.shape[-2] // CELL, padded.shape[-1] // CELL)
        if trimap is not None:
            _check_trimap(trimap, (B, 3, *grid), image)

        outputs = self.decoder(self.encoder(padded, backend))
        trimap_logits = [F.pixel_shuffle(head(x), 2) for head, x in zip(self.trimap_heads, outputs)]
        seg_logits = [F.pixel_shuffle(head(x), 2) for head, x in zip(self.seg_heads, outputs)]
        seg, probabilities = torch.sigmoid(seg_logits[-1]), torch.softmax(trimap_logits[-1], 1)

        chooser = probabilities.detach() if trimap is None else trimap
        selection = select_tiles(chooser, self.capacity(B, *grid), backend=backend)
        rows = _selected_rows(selection, padded, backend)
        rois = gather_tiles(padded, seg, rows.tiles, rows.count, CELL, backend=backend)
        nearest = knn_tiles(rows.tiles, rows.count, NEIGHBOURS, rows.tile_map, backend=backend)
        nbr = official_neighbours(nearest)
        features = self.roi_head(rois, rows.tiles, nbr.int(), self.rel_pos_bias_table, backend)
        refined = self.roi_matte_head(features).clamp(0, 1)
        alpha = scatter_tiles(seg, refined, rows.tiles, rows.count, rows.tile_map, mode="nearest",
                              backend=backend)
        out = {"alpha": alpha[:, :, :H, :W], "selection": selection}
        if aux:
            out.update(seg_logits=seg_logits, trimap_logits=trimap_logits, seg=seg, trimap=probabilities,
                       refined=refined)
        return out

    def predict(self, image, backend=None):
        """The authors' inference (their benchmark script): the image resized to sides floored to
        multiples of 128 (at least 128) by skimage's resize (bilinear, anti-aliased when
        shrinking), the forward, and the alpha resized back the same way.
        image: float [B, 3, H, W] in [0, 1] -> alpha [B, 1, H, W]. Gradients follow the caller."""
        check_image("CRAMatting", image, self.rel_pos_bias_table)
        H, W = image.shape[-2:]
        size = (max(H // self.stride, 1) * self.stride, max(W // self.stride, 1) * self.stride)
        resized = resize(image, size) if size != (H, W) else image
        alpha = self(resized, backend=backend)["alpha"]
        return resize(alpha, (H, W)).clamp(0, 1) if size != (H, W) else alpha


def _selected_rows(selection, image, backend):
    """The selection the region head runs on. On the CPU it is cut to its `count` rows (reading
    the count costs nothing there, and the default capacity is the whole grid), and so it is for
    the eager twin everywhere (the authors' nonzero gives exactly the selected cells). The fused
    model on a GPU keeps the fixed capacity: no host syncs, capturable in a CUDA graph; under
    torch.compile the graph stays whole. The output is the same either way: rows past count are
    ignored."""
    if torch.compiler.is_compiling() or (image.device.type != "cpu" and backend != "torch"):
        return selection
    return selection._replace(tiles=selection.tiles[:int(selection.count)])


def _check_capacity(tile_capacity):
    if isinstance(tile_capacity, bool) or not isinstance(tile_capacity, (int, float)):
        raise TypeError(f"CRAMatting: tile_capacity must be an int (cells) or a float in (0, 1] "
                        f"(fraction of the 1/8 grid), got {tile_capacity!r}")
    if isinstance(tile_capacity, int) and tile_capacity < 0 or \
            isinstance(tile_capacity, float) and not 0.0 < tile_capacity <= 1.0:
        raise ValueError(f"CRAMatting: tile_capacity must be an int >= 0 or a float in (0, 1], "
                         f"got {tile_capacity!r}")
    return tile_capacity


def _check_trimap(trimap, shape, image):
    if not torch.is_tensor(trimap) or tuple(trimap.shape) != shape or not trimap.is_floating_point():
        got = f"{trimap.dtype} {list(trimap.shape)}" if torch.is_tensor(trimap) else type(trimap).__name__
        raise ValueError(f"CRAMatting: trimap must be float [B, 3, ceil(H/128)*16, ceil(W/128)*16] = "
                         f"{list(shape)} for this image (logits or one-hot: 0 background, 1 unknown, "
                         f"2 foreground), got {got}")
    if trimap.device != image.device:
        raise ValueError(f"CRAMatting: trimap is on {trimap.device}, the image on {image.device}")
