"""CRAMatting's refinement stage: the uncertain 8x8 tiles, each encoded into one token, mixed with
its nearest uncertain tiles by cross-region attention, and decoded back to an 8x8 alpha."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.nn import CrossRegionAttention
from fastmatte.ops import TileSelection, gather_tiles

TILE = 8  # one tile per pixel of the 1/8 grid
HALO = 4  # context pixels around each tile: 16 x 16 patches, eaten by the four valid 3x3 convs


class TileRefiner(nn.Module):
    """Patch encoder (valid convolutions) -> CrossRegionAttention -> patch decoder.

    Every selected tile is cropped with a HALO-pixel border from the RGB image and the bilinearly
    upsampled coarse alpha (fastmatte.ops.gather_tiles): a [4, 16, 16] patch.
      encoder: conv3x3 4->c1 (14x14), conv3x3 c1->c2 (12x12), conv3x3 stride 2 c2->token_dim
               (5x5), mean over the 5x5 -> one token per tile.
      attention: CrossRegionAttention(token_dim, heads, head_dim, k, search_range) over the
               selection's tiles.
      decoder: the 12x12 encoder features plus a linear projection of the attended token
               (broadcast), conv3x3 c2->c2 (10x10), conv3x3 c2->c1 (8x8), conv1x1 c1->1: a
               correction added to the tile's upsampled coarse alpha.
    Every conv is followed by ReLU except the last. Widths (c1, c2) = `channels`.

    forward(image[B, 3, Hp, Wp], coarse_alpha[B, 1, Hp/8, Wp/8], selection, backend=None)
    -> refined [capacity, 1, 8, 8] in image's dtype (rows past selection.count are padding).
    Hp and Wp must be multiples of 8. Not clamped: scatter_tiles clamps to [0, 1].
    """

    def __init__(self, token_dim=128, heads=8, head_dim=16, k=8, search_range=4, channels=(16, 32)):
        super().__init__()
        c1, c2 = channels
        self.encode1 = nn.Conv2d(4, c1, 3)
        self.encode2 = nn.Conv2d(c1, c2, 3)
        self.encode3 = nn.Conv2d(c2, token_dim, 3, stride=2)
        self.attention = CrossRegionAttention(token_dim, heads, head_dim, k, search_range)
        self.token_to_map = nn.Linear(token_dim, c2)
        self.decode1 = nn.Conv2d(c2, c2, 3)
        self.decode2 = nn.Conv2d(c2, c1, 3)
        self.to_alpha = nn.Conv2d(c1, 1, 1)

    def forward(self, image, coarse_alpha, selection: TileSelection, backend=None):
        tiles, count = selection.tiles, selection.count
        patches = gather_tiles(image, coarse_alpha, tiles, count, TILE, HALO, backend=backend)
        if patches.device.type == "cpu":
            # oneDNN runs these small convolutions faster on channels-last maps (HD, 2 cores: the
            # whole frame 423 -> 354 ms); on a GPU the layout is left as it is (not measured there)
            patches = patches.contiguous(memory_format=torch.channels_last)
        features = F.relu(self.encode2(F.relu(self.encode1(patches))))
        tokens = F.relu(self.encode3(features)).mean((2, 3))
        tokens = self.attention(tokens, tiles, count, selection.tile_map, backend=backend)
        x = features + self.token_to_map(tokens)[:, :, None, None]
        x = F.relu(self.decode2(F.relu(self.decode1(x))))
        upsampled_alpha = patches[:, 3:, HALO:HALO + TILE, HALO:HALO + TILE]
        return upsampled_alpha + self.to_alpha(x)
