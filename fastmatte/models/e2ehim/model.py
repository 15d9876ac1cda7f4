"""E2E-HIM (Liu et al., "End-to-End Human Instance Matting", aipixel/E2E-HIM): the authors'
E2EHIMST with its Swin-T backbone (swin.py), DETR-style instance queries (query_decoder.py) and a
mask decoder whose per-instance 1x1 kernels the queries generate (mask_decoder.py, blocks.py).
Module names are the authors', so that their swintiny.ckpt loads as it is.

What is fastmatte's: any input size that is a multiple of 32 and any batch (the authors' code
hard-codes 640 x 640 and one image: an 80 x 80 repeat, view(20, 1) and a softmax over the stacked
batch axis; here the sizes are computed and the 21-way softmax is taken per image), and the fused
inference path (fastmatte.ops.window_attention, batched dynamic kernels, trimap_fusion in
predict). backend="torch" runs the authors' algorithm step by step: the eager twin.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models.e2ehim.blocks import PositionAttention, conv_gn, conv_stage, leaky
from fastmatte.models.e2ehim.mask_decoder import dynamic_conv, instance_mixture
from fastmatte.models.e2ehim.query_decoder import MLP, QueryDecoder
from fastmatte.models.e2ehim.swin import E2ESwin
from fastmatte.models.image_check import check_image, check_network_size
from fastmatte.ops._backend import check_backend

NAME = "E2EHIM"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 640  # the official inference resolution (eval_swintiny.py)
MIN_AREA = 1000.0  # eval_swintiny.py keeps an instance whose alpha sums to more than 1000 (x 255)
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2  # the trimap classes


def _up(x, factor=2):
    """The official nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class E2EHIM(nn.Module):
    """E2E-HIM as released (swintiny.ckpt): Swin-T, num_queries instance queries (20 released).

    forward(image, backend=None) -> dict:
      image: float [B, 3, H, W] RGB in [0, 1], H and W multiples of 32 (640 x 640 is the official
        size), in the model's dtype and device; ImageNet-normalized inside.
      "presence": [B, N, 2] logits (the official x4o); query n holds an instance when
        presence[..., 1] > presence[..., 0].
      "alpha": [B, N, H, W], each query's alpha, clamped to [0, 1] (the official x1all).
      "trimap": [B, N, 3, H, W], each query's trimap logits (classes 0 background, 1 unknown,
        2 foreground), bilinearly upsampled x8 from the 1/8 grid (the official third output,
        [B, 3N, H, W] query-major, reshaped).
      backend: None (fastmatte ops, batched per-query kernels) or "torch" (the authors' algorithm,
        the eager twin), or a backend of the ops ("cpu", "triton").
    """

    instances = True  # predict gives each image's instances (fastmatte.Matter's instance models)

    def __init__(self, num_queries: int = 20):
        super().__init__()
        self.maxp = num_queries
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        relu = nn.ReLU
        # The CNN stem: x2b (64 channels, 1/2) and x4a (128 channels, 1/4).
        self.pre_conv = nn.Sequential(*conv_gn(3, 32, 3, 16, relu(), stride=2),
                                      *conv_gn(32, 32, 3, 16, relu()))
        self.res1 = nn.Sequential(*conv_gn(32, 64, 3, 32, relu()))
        self.ds1 = nn.Sequential(*conv_gn(64, 128, 3, 32, relu(), stride=2))
        self.trans = E2ESwin(128)
        # The queries.
        self.toplayer = nn.Sequential(*conv_gn(768, 256, 1, 32, relu()))
        self.decoder1 = QueryDecoder(6, 256)
        self.query_embed = nn.Embedding(num_queries, 256)
        self.globalfcnum = MLP(256, 128, 2, 2)
        self.globalfc = MLP(258, 512, 3 * 257, 3)  # kernels A, C, biases A, C, kernel E, bias E
        self.globalfc2 = MLP(258, 512, 3 * 256 + 3 + 64 + 1, 3)  # trimap rows, biases; alpha kernel, bias
        self.globalfck = MLP(258, 512, 2 * 128, 1)  # the mixing vectors 2a, 2b
        # The mask decoder, 1/32 .. 1/8.
        self.c32m = nn.Sequential(*conv_gn(768, 512, 1, 16, relu()))
        self.c16m = conv_stage(896, 512, 3, 16, relu(), 128, 2)
        self.c8m = conv_stage(704, 256, 3, 16, relu(), 64, 2)
        self.c8m.extend(conv_gn(256, 256, 1, 16, relu()))
        self.c1t1 = nn.Conv2d(256, 1, 1)  # the background maps of the two 21-way softmaxes
        self.c1t2 = nn.Conv2d(256, 1, 1)
        self.otherwright1 = nn.Sequential(nn.Conv2d(256, 128, 1))  # the background's mixing maps
        self.otherwright2 = nn.Sequential(nn.Conv2d(256, 128, 1))
        self.g1 = nn.GroupNorm(32, 128)
        self.g2 = nn.GroupNorm(32, 128)
        self.c8d = conv_stage(512 + num_queries, 512, 1, 32, relu(), 128, 2)
        self.c8d2 = nn.Sequential(*conv_gn(512, 512, 3, 32, relu(), stride=2))
        self.c16 = conv_stage(1408, 512, 1, 32, leaky(), 128, 2)
        self.c16d = nn.Sequential(*conv_gn(512, 768, 3, 32, leaky(), stride=2))
        self.c32 = conv_stage(1536, 1024, 1, 32, leaky(), 256, 1)
        self.pam = PositionAttention(1024, 256)
        self.c32b = conv_stage(1024, 1024, 1, 32, leaky(), 256, 2)
        self.c16u = conv_stage(1920, 512, 1, 32, leaky(), 128, 2)
        self.c8 = conv_stage(1216, 512, 1, 32, leaky(), 128, 2)
        self.c8d3 = nn.Sequential(*conv_gn(512, 512, 3, 32, relu()), nn.Dropout(0.1),
                                  *conv_gn(512, 256, 3, 32, relu()))
        # The alpha path, 1/4 .. 1.
        self.c4 = conv_stage(736, 256, 3, 32, leaky(), 64, 3)
        self.c2 = nn.Sequential(*conv_gn(320, 128, 3, 32, leaky()), *conv_gn(128, 128, 3, 32, leaky()))
        # The official nn.LeakyReLU(True) is a slope of 1.0: the identity.
        self.c1 = nn.Sequential(nn.Conv2d(131, 96, 3, 1, 1), nn.Identity(), nn.Conv2d(96, 64, 3, 1, 1),
                                nn.Identity())

    def forward(self, image, backend=None):
        out = self.forward_coarse(image, backend)
        batch, queries, _, height, width = out["trimap8"].shape
        trimap = _up(out.pop("trimap8").flatten(1, 2), 8).view(batch, queries, 3, height * 8, width * 8)
        return {**out, "trimap": trimap}

    def forward_coarse(self, image, backend=None):
        """forward, but with "trimap8" [B, N, 3, H/8, W/8], the trimap logits before their x8
        upsampling, in place of "trimap" (predict needs no full-resolution logits)."""
        check_backend(NAME, backend)
        check_image(NAME, image, self.mean)
        check_network_size(NAME, image, 32)
        fused = backend != "torch"
        x = (image - self.mean) / self.std
        x2b = self.res1(self.pre_conv(x))
        x4a = self.ds1(x2b)
        x4, x8, x16, x32 = self.trans(x4a, backend)
        memory = self.toplayer(x32).flatten(2).permute(2, 0, 1)  # [h32 * w32, B, 256]
        persel = self.decoder1(memory, self.query_embed.weight)  # [B, N, 256]
        presence = self.globalfcnum(persel)
        persel = torch.cat([persel, torch.softmax(presence, -1)], -1)
        k1, k2, ko = self.globalfc(persel), self.globalfck(persel), self.globalfc2(persel)

        feats2 = self.c16m(torch.cat([_up(self.c32m(x32)), x16], 1))
        f8 = self.c8m(torch.cat([_up(feats2), x8], 1))
        weights = torch.stack([k1[..., 0:256], k1[..., 256:512], k1[..., 514:770]], 2)  # A, C, E
        biases = k1[..., [512, 513, 770]]
        if fused:
            tc1, tc2, tc3 = dynamic_conv(f8, weights, biases, True).unflatten(1, (-1, 3)).unbind(2)
        else:
            tc1, tc2, tc3 = (dynamic_conv(f8, weights[:, :, i:i + 1], biases[..., i:i + 1], False)
                             for i in range(3))
        probs1 = torch.softmax(torch.cat([tc1, self.c1t1(f8)], 1), 1)  # over the N queries + background
        probs2 = torch.softmax(torch.cat([tc2, self.c1t2(f8)], 1), 1)
        mix1 = instance_mixture(probs1, k2[..., :128], self.otherwright1(f8), self.g1, fused)
        mix2 = instance_mixture(probs2, k2[..., 128:], self.otherwright2(f8), self.g2, fused)
        m8 = self.c8d(torch.cat([mix1, mix2, f8, torch.sigmoid(tc3)], 1))
        m16 = self.c16(torch.cat([self.c8d2(m8), feats2, x16], 1))
        m32 = self.c32(torch.cat([self.c16d(m16), x32], 1))
        p32 = self.c32b(self.pam(m32, fused))
        m16 = _up(self.c16u(torch.cat([m16, _up(p32), x16], 1)))
        t8 = self.c8(torch.cat([m16, x8, m8], 1))
        queries = persel.shape[1]
        rows = ko[..., :768].unflatten(-1, (3, 256))
        trimap8 = dynamic_conv(self.c8d3(t8), rows, ko[..., 768:771], fused)
        a = _up(self.c4(torch.cat([_up(t8), x4, x4a], 1)))
        a = _up(self.c2(torch.cat([a, x2b], 1)))
        a = self.c1(torch.cat([a, x], 1))
        alpha = dynamic_conv(a, ko[..., None, 771:835], ko[..., 835:836], fused).clamp(0, 1)
        return {"presence": presence, "alpha": alpha, "trimap8": trimap8.unflatten(1, (queries, 3))}

    def predict(self, image, backend=None):
        """The instances of each image, as the official eval_swintiny.py makes them.

        image: float [B, 3, H, W] RGB in [0, 1], any size. Returns a list of B float tensors
        [n_b, H, W] in [0, 1] (n_b may be 0), the present instances in query order.

        As the official script: each image as 8-bit (image * 255 rounded) is resized to 640 x 640
        with cv2.resize INTER_LANCZOS4 (aspect ratio not kept) and / 255; a query is present when
        presence[..., 1] > presence[..., 0]; its alpha is 1 where the argmax of its trimap is
        foreground, its alpha where unknown, 0 where background; that times 255 truncated to
        uint8, resized back to H x W with cv2 INTER_LANCZOS4, kept when it sums to more than
        1000 * 255, and returned / 255.
        fastmatte's choices: the 8-bit rounding of the float input (the official script reads an
        8-bit file), all images of the batch in one forward, the argmax on the trimap logits (the
        official takes it after a softmax: the same classes) through fastmatte.ops.trimap_fusion
        from the 1/8 logits, which upsamples bilinearly inside as the official maskt is made.
        """
        check_backend(NAME, backend)
        check_image(NAME, image, self.mean)
        height, width = image.shape[-2:]
        pixels = (image.detach() * 255).round().clamp(0, 255).to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
        resized = [cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_LANCZOS4) for p in pixels]
        net = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous()  # NCHW, as officially
        net = net.to(image.device, image.dtype) / 255
        out = self.forward_coarse(net, backend)
        results = []
        for b in range(image.shape[0]):
            keep = out["presence"][b, :, 1] > out["presence"][b, :, 0]
            alpha = ops.trimap_fusion(out["trimap8"][b:b + 1, keep], out["alpha"][b:b + 1, keep, None],
                                      fg_class=FOREGROUND, unknown_class=UNKNOWN, backend=backend)[0, :, 0]
            eight_bit = (alpha * 255).to(torch.uint8).cpu().numpy()  # truncation, as np.array(.., np.uint8)
            mattes = [cv2.resize(m, (width, height), interpolation=cv2.INTER_LANCZOS4) for m in eight_bit]
            mattes = [m for m in mattes if m.sum() / 255.0 > MIN_AREA]
            stacked = np.stack(mattes) if mattes else np.zeros((0, height, width), np.uint8)
            results.append(torch.from_numpy(stacked).to(image.device, image.dtype) / 255)
        return results
