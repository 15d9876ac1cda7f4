"""E2E-HIM's set loss (fastmatte.losses.e2ehim) against float64 NumPy loops written from the formulas
of its module docstring: the matching cost per query / instance pair, the matching against brute
force over every injective assignment, every loss part, the default trimap against SciPy's
morphology, empty ground truth, autograd's gradcheck, and a tiny stand-in model whose loss falls
on synthetic multi-person composites."""
import itertools
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn as nn

from fastmatte.io.sample import synthetic_instance_composites
from fastmatte.losses import (E2EHIM_LOSS_WEIGHTS, E2EHIM_MATCHING_WEIGHTS, E2EHIM_NO_OBJECT_WEIGHT,
                              e2ehim_loss, e2ehim_matching, e2ehim_matching_costs, e2ehim_trimap,
                              trimap_from_alpha)


def random_case(counts, N=4, H=6, W=5, seed=0, dtype=torch.float64):
    """Random outputs for len(counts) images and ground truth with counts[b] instances each: gt
    alphas with solid 0, solid 1 and soft pixels, and random gt trimaps (classes 0, 1, 2)."""
    gen = torch.Generator().manual_seed(seed)
    B = len(counts)
    outputs = {"presence": torch.randn(B, N, 2, generator=gen, dtype=dtype) * 2,
               "alpha": torch.rand(B, N, H, W, generator=gen, dtype=dtype),
               "trimap": torch.randn(B, N, 3, H, W, generator=gen, dtype=dtype) * 2}
    alphas, trimaps = [], []
    for M in counts:
        soft = torch.rand(M, H, W, generator=gen, dtype=dtype)
        pick = torch.randint(0, 3, (M, H, W), generator=gen)
        alphas.append(torch.where(pick == 0, 0.0, torch.where(pick == 2, 1.0, soft)).to(dtype))
        trimaps.append(torch.randint(0, 3, (M, H, W), generator=gen))
    return outputs, alphas, trimaps


# --- float64 references -----------------------------------------------------------------------

def softmax(v):
    e = np.exp(np.asarray(v, np.float64) - np.max(v))
    return e / e.sum()


def ref_mask(logits):
    """m = P(unknown) + P(foreground) per pixel of [3, H, W] logits, with log m and log(1 - m)."""
    H, W = logits.shape[1:]
    m, log_m, log_not_m = np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W))
    for y, x in np.ndindex(H, W):
        p = softmax(logits[:, y, x])
        m[y, x] = p[1] + p[2]
        log_m[y, x] = math.log(p[1] + p[2])
        log_not_m[y, x] = math.log(p[0])
    return m, log_m, log_not_m


def ref_focal(logits, target):
    m, log_m, log_not_m = ref_mask(logits)
    total = 0.0
    for y, x in np.ndindex(*target.shape):
        t = target[y, x]
        total += (0.25 * t * (1 - m[y, x]) ** 2 * -log_m[y, x]
                  + 0.75 * (1 - t) * m[y, x] ** 2 * -log_not_m[y, x])
    return total / target.size


def ref_dice(logits, target):
    m = ref_mask(logits)[0]
    return 1 - (2 * (m * target).sum() + 1) / (m.sum() + target.sum() + 1)


def ref_costs(presence, trimap, classes, weights=E2EHIM_MATCHING_WEIGHTS):
    """[N, M] cost of one image: presence [N, 2], trimap [N, 3, H, W], classes [M, H, W]."""
    N, M = presence.shape[0], classes.shape[0]
    cost = np.zeros((N, M))
    for q, j in np.ndindex(N, M):
        target = (classes[j] != 0).astype(np.float64)
        cost[q, j] = (weights["class"] * -softmax(presence[q])[1]
                      + weights["focal"] * ref_focal(trimap[q], target)
                      + weights["dice"] * ref_dice(trimap[q], target))
    return cost


def brute_force(cost):
    """The injective assignment instance j -> query perm[j] of least summed cost: (total, {q: j})."""
    N, M = cost.shape
    best = (math.inf, None)
    for perm in itertools.permutations(range(N), M):
        total = sum(cost[perm[j], j] for j in range(M))
        if total < best[0]:
            best = (total, {q: j for j, q in enumerate(perm)})
    return best


def ref_loss(outputs, alphas, trimaps, no_object=E2EHIM_NO_OBJECT_WEIGHT):
    presence, alpha, trimap = (outputs[k].detach().numpy() for k in ("presence", "alpha", "trimap"))
    alphas = [a.numpy() for a in alphas]
    trimaps = [t.numpy() for t in trimaps]
    B, N = presence.shape[:2]
    H, W = alpha.shape[2:]
    matches = [brute_force(ref_costs(presence[b], trimap[b], trimaps[b]))[1] for b in range(B)]
    K = max(1, sum(len(m) for m in matches))
    num = den = 0.0
    parts = dict.fromkeys(("mask_focal", "mask_dice", "trimap", "alpha"), 0.0)
    for b in range(B):
        for q in range(N):
            label = 1 if q in matches[b] else 0
            w = 1.0 if label else no_object
            num += w * -math.log(softmax(presence[b, q])[label])
            den += w
        for q, j in matches[b].items():
            classes = trimaps[b][j]
            target = (classes != 0).astype(np.float64)
            parts["mask_focal"] += ref_focal(trimap[b, q], target) / K
            parts["mask_dice"] += ref_dice(trimap[b, q], target) / K
            ce = sum(-math.log(softmax(trimap[b, q, :, y, x])[classes[y, x]]) for y, x in np.ndindex(H, W))
            parts["trimap"] += ce / (H * W) / K
            unknown = [(y, x) for y, x in np.ndindex(H, W) if classes[y, x] == 1]
            if unknown:
                l1 = sum(abs(alpha[b, q, y, x] - alphas[b][j, y, x]) for y, x in unknown)
                parts["alpha"] += l1 / len(unknown) / K
    parts["class"] = num / den
    total = sum(E2EHIM_LOSS_WEIGHTS[k] * v for k, v in parts.items())
    return total, parts, matches


def ref_trimap(alpha, side=5):
    """E2E-HIM classes of [M, H, W] alphas: SciPy binary morphology, outside pixels ignored."""
    square = np.ones((side, side), bool)
    out = np.zeros(alpha.shape, np.int64)
    for i in range(alpha.shape[0]):
        fg = ndi.binary_erosion(alpha[i] >= 1, square, border_value=1)
        covered = ndi.binary_dilation(alpha[i] > 0, square, border_value=0)
        out[i] = 2 * fg + (covered & ~fg)
    return out


# --- matching ---------------------------------------------------------------------------------

@pytest.mark.parametrize("M", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_costs_and_matching_against_brute_force(M, seed):
    outputs, alphas, trimaps = random_case([M], seed=seed)
    cost = e2ehim_matching_costs(outputs, alphas, trimaps)[0]
    expected = ref_costs(outputs["presence"][0].numpy(), outputs["trimap"][0].numpy(), trimaps[0].numpy())
    assert cost.dtype == torch.float64 and cost.shape == (4, M)
    np.testing.assert_allclose(cost.numpy(), expected, rtol=1e-10, atol=1e-12)
    best, assignment = brute_force(expected)
    queries, targets = e2ehim_matching(outputs, alphas, trimaps)[0]
    assert queries.dtype == targets.dtype == torch.int64 and len(queries) == M
    assert dict(zip(queries.tolist(), targets.tolist())) == (assignment or {})
    assert queries.tolist() == sorted(queries.tolist())
    if M:
        assert math.isclose(expected[queries.numpy(), targets.numpy()].sum(), best, rel_tol=1e-12)
    # float32 inputs: the same assignment (random costs have no near-ties)
    outputs32 = {k: v.float() for k, v in outputs.items()}
    cost32 = e2ehim_matching_costs(outputs32, [a.float() for a in alphas], trimaps)[0]
    assert cost32.dtype == torch.float32
    np.testing.assert_allclose(cost32.numpy(), expected, rtol=1e-5, atol=1e-6)
    q32, t32 = e2ehim_matching(outputs32, [a.float() for a in alphas], trimaps)[0]
    assert q32.tolist() == queries.tolist() and t32.tolist() == targets.tolist()


def test_matching_weights_and_default_trimap():
    outputs, alphas, _ = random_case([3], seed=5)
    weights = {"class": 2.0, "focal": 3.0, "dice": 0.5}
    default = e2ehim_trimap(alphas[0])
    cost = e2ehim_matching_costs(outputs, alphas, weights=weights)[0]
    expected = ref_costs(outputs["presence"][0].numpy(), outputs["trimap"][0].numpy(), default.numpy(),
                         weights)
    np.testing.assert_allclose(cost.numpy(), expected, rtol=1e-10, atol=1e-12)
    # dilated random alphas can cover the whole 6 x 5 image alike (tied columns): compare the sums
    queries, targets = e2ehim_matching(outputs, alphas, weights=weights)[0]
    assert math.isclose(expected[queries.numpy(), targets.numpy()].sum(), brute_force(expected)[0],
                        rel_tol=1e-12)


def test_default_trimap_is_reversed_trimap_from_alpha():
    gen = torch.Generator().manual_seed(3)
    y, x = torch.meshgrid(torch.arange(24.0), torch.arange(20.0), indexing="ij")
    alphas = []
    for _ in range(3):
        cy, cx, r = 6 + 12 * torch.rand(1, generator=gen), 5 + 10 * torch.rand(1, generator=gen), 5.0
        alphas.append(((r - ((y - cy) ** 2 + (x - cx) ** 2).sqrt()) / 2).clamp(0, 1))
    alpha = torch.stack(alphas).double()
    trimap = e2ehim_trimap(alpha)
    assert trimap.dtype == torch.int64 and set(trimap.unique().tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(trimap.numpy(), ref_trimap(alpha.numpy()))
    np.testing.assert_array_equal(trimap.numpy(), 2 - trimap_from_alpha(alpha[:, None]).numpy())
    assert e2ehim_trimap(alpha[:0]).shape == (0, 24, 20)


# --- loss ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("counts,seed", [([2, 0], 0), ([3, 1], 1), ([1, 2, 3], 2), ([4], 3)])
def test_loss_against_reference(counts, seed):
    outputs, alphas, trimaps = random_case(counts, seed=seed)
    total, parts = e2ehim_loss(outputs, alphas, trimaps)
    ref_total, ref_parts, ref_matches = ref_loss(outputs, alphas, trimaps)
    assert set(parts) == set(E2EHIM_LOSS_WEIGHTS)
    for name, value in parts.items():
        assert value.dim() == 0 and value.dtype == torch.float64
        assert math.isclose(value.item(), ref_parts[name], rel_tol=1e-10, abs_tol=1e-12), name
    assert math.isclose(total.item(), ref_total, rel_tol=1e-10)
    matches = e2ehim_matching(outputs, alphas, trimaps)
    assert [dict(zip(q.tolist(), t.tolist())) for q, t in matches] == [m or {} for m in ref_matches]
    # a matching passed in is used as is; a float32 loss agrees
    again, _ = e2ehim_loss(outputs, alphas, trimaps, matches=matches)
    assert again.item() == total.item()
    total32, _ = e2ehim_loss({k: v.float() for k, v in outputs.items()}, [a.float() for a in alphas], trimaps)
    assert total32.dtype == torch.float32 and math.isclose(total32.item(), ref_total, rel_tol=1e-5)


def test_loss_weights_and_no_object_weight():
    outputs, alphas, trimaps = random_case([2, 1], seed=4)
    _, parts = e2ehim_loss(outputs, alphas, trimaps)
    weights = {"class": 0.5, "mask_focal": 2.0, "trimap": 3.0}
    total, _ = e2ehim_loss(outputs, alphas, trimaps, weights=weights)
    expected = sum((E2EHIM_LOSS_WEIGHTS | weights)[k] * v for k, v in parts.items())
    assert math.isclose(total.item(), expected.item(), rel_tol=1e-12)
    _, parts_half = e2ehim_loss(outputs, alphas, trimaps, no_object_weight=0.5)
    assert math.isclose(parts_half["class"].item(), ref_loss(outputs, alphas, trimaps, 0.5)[1]["class"],
                        rel_tol=1e-10)


def test_empty_ground_truth():
    outputs, alphas, _ = random_case([0, 0], seed=6)
    outputs = {k: v.requires_grad_() for k, v in outputs.items()}
    total, parts = e2ehim_loss(outputs, alphas)
    expected = -torch.log_softmax(outputs["presence"].detach(), -1)[..., 0].mean()
    assert math.isclose(parts["class"].item(), expected.item(), rel_tol=1e-12)
    for name in ("mask_focal", "mask_dice", "trimap", "alpha"):
        assert parts[name].item() == 0.0
    assert math.isclose(total.item(), expected.item(), rel_tol=1e-12)
    total.backward()
    assert torch.isfinite(outputs["presence"].grad).all() and outputs["presence"].grad.abs().sum() > 0
    assert outputs["alpha"].grad is None or not outputs["alpha"].grad.any()
    assert outputs["trimap"].grad is None or not outputs["trimap"].grad.any()
    assert all(len(q) == 0 for q, _ in e2ehim_matching(outputs, alphas))
    # every weight 0: 0, not NaN
    total, parts = e2ehim_loss(outputs, alphas, no_object_weight=0.0)
    assert parts["class"].item() == 0.0 and total.item() == 0.0


def test_gradcheck():
    gen = torch.Generator().manual_seed(7)
    N, H, W = 3, 4, 4
    presence = torch.randn(1, N, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    alpha = (0.2 + 0.1 * torch.rand(1, N, H, W, generator=gen, dtype=torch.float64)).requires_grad_()
    trimap = torch.randn(1, N, 3, H, W, generator=gen, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor([[0, 0, 0.5, 1], [0, 0.5, 1, 1], [0, 0.5, 1, 1], [0, 0, 0.5, 1]], dtype=torch.float64)
    gts = [torch.stack([gt, gt.flip(-1)])]
    classes = [torch.stack([torch.tensor([[0, 1, 1, 2], [1, 1, 2, 2], [1, 1, 2, 2], [0, 1, 1, 2]])] * 2)]
    classes[0][1] = classes[0][1].flip(-1)
    costs = e2ehim_matching_costs({"presence": presence, "alpha": alpha, "trimap": trimap}, gts, classes)[0]
    assert (costs.flatten().sort().values.diff() > 1e-4).all()  # no near-tie the perturbations could flip

    def loss(p, a, t, trimaps=classes):
        return e2ehim_loss({"presence": p, "alpha": a, "trimap": t}, gts, trimaps)[0]

    assert torch.autograd.gradcheck(loss, (presence, alpha, trimap))
    assert torch.autograd.gradcheck(lambda p, a, t: loss(p, a, t, None), (presence, alpha, trimap))


def test_argument_errors():
    outputs, alphas, trimaps = random_case([2], seed=8)
    with pytest.raises(ValueError, match="more than the N = 4 queries"):
        e2ehim_loss(outputs, [torch.rand(5, 6, 5, dtype=torch.float64)])
    with pytest.raises(TypeError, match="presence, alpha and trimap"):
        e2ehim_loss({"alpha": outputs["alpha"]}, alphas)
    with pytest.raises(ValueError, match="unknown parts"):
        e2ehim_loss(outputs, alphas, weights={"dice": 1.0})
    with pytest.raises(ValueError, match="unknown parts"):
        e2ehim_matching(outputs, alphas, weights={"mask_dice": 1.0})
    with pytest.raises(ValueError, match="list of B = 1"):
        e2ehim_loss(outputs, alphas * 2)
    with pytest.raises(ValueError, match=r"gt_alphas\[0\] must be \[2, 6, 5\]"):
        e2ehim_loss(outputs, [torch.rand(2, 6, 4, dtype=torch.float64)])
    with pytest.raises(ValueError, match="classes 0"):
        e2ehim_loss(outputs, alphas, [trimaps[0] + 1])
    with pytest.raises(ValueError, match="distinct queries"):
        e2ehim_loss(outputs, alphas, trimaps, matches=[(torch.tensor([0, 0]), torch.tensor([0, 1]))])
    with pytest.raises(ValueError, match="no_object_weight"):
        e2ehim_loss(outputs, alphas, no_object_weight=-1.0)


# --- training -----------------------------------------------------------------------------------

class TinyE2EHIM(nn.Module):
    """A stand-in with E2E-HIM's output dict: a few convolutions (with coordinate channels), per
    query 1 alpha + 3 trimap channels, and presence logits from pooled features."""

    def __init__(self, queries=4, width=24):
        super().__init__()
        self.queries = queries
        self.body = nn.Sequential(nn.Conv2d(5, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU())
        self.head = nn.Conv2d(width, queries * 4, 1)
        self.presence = nn.Linear(width, queries * 2)

    def forward(self, image):
        B, _, H, W = image.shape
        ys = torch.linspace(-1, 1, H).view(1, 1, H, 1).expand(B, 1, H, W)
        xs = torch.linspace(-1, 1, W).view(1, 1, 1, W).expand(B, 1, H, W)
        features = self.body(torch.cat([image, ys, xs], 1))
        out = self.head(features).view(B, self.queries, 4, H, W)
        return {"presence": self.presence(features.mean((2, 3))).view(B, self.queries, 2),
                "alpha": torch.sigmoid(out[:, :, 0]), "trimap": out[:, :, 1:]}


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    images, alphas = synthetic_instance_composites(4, 32)
    assert {len(a) for a in alphas} == {2, 3}
    assert all(float(a.sum(0).max()) <= 1 + 1e-6 for a in alphas)
    model = TinyE2EHIM()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(20):
        total, parts = e2ehim_loss(model(images), alphas)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: v.item() for k, v in parts.items()} | {"total": total.item()})
    assert all(math.isfinite(h["total"]) for h in history)
    assert history[-1]["total"] < 0.6 * history[0]["total"], [round(h["total"], 3) for h in history]
    for name in E2EHIM_LOSS_WEIGHTS:
        assert history[-1][name] < history[0][name], name
