"""fastmatte.metrics against an independent NumPy implementation of the DIM MATLAB code
(tests/dim_metrics_numpy.py), plus cases worked out by hand."""
import math
import warnings
import zlib

import numpy as np
import pytest
import torch

import dim_metrics_numpy as dim
from fastmatte import metrics
from helpers import needs_cuda

SIZES = [(1, 1), (1, 9), (7, 1), (13, 17), (24, 11), (31, 40)]
# The tie values of uint8: 51k / 255 = k / 5 is exactly a threshold.
TIE_VALUES = np.array([0, 51, 102, 153, 204, 255], np.uint8)


def smooth_matte(shape, rng):
    """A uint8 matte with a few soft blobs, hard 0 / 255 areas and everything between."""
    H, W = shape
    y, x = np.mgrid[0:H, 0:W]
    field = np.zeros(shape)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(1, max(2, max(H, W) / 2))
        field += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r ** 2))
    return np.clip((field - 0.4) * 400 + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


def noisy(matte, rng, noise=40):
    return np.clip(matte.astype(int) + rng.integers(-noise, noise + 1, matte.shape), 0, 255).astype(np.uint8)


def quantized(shape, rng):
    """Values on the thresholds only, in runs: many equal-size components and exact ties."""
    runs = rng.integers(0, len(TIE_VALUES), (shape[0], (shape[1] + 1) // 2))
    return TIE_VALUES[np.repeat(runs, 2, axis=1)[:, :shape[1]]]


def trimap_of(shape, rng):
    trimap = np.full(shape, 128, np.uint8)
    trimap[rng.random(shape) < 0.2] = 0
    trimap[rng.random(shape) < 0.2] = 255
    return trimap


ORACLE = {"sad": dim.sad, "mse": dim.mse, "mad": dim.mad, "grad_error": dim.grad, "conn_error": dim.conn}
TOLERANCE = {"sad": 1e-6, "mse": 1e-6, "mad": 1e-6, "grad_error": 1e-4, "conn_error": 1e-6}


def check_against_oracle(name, pred, gt, trimap):
    got = getattr(metrics, name)(pred, gt, trimap)
    want = ORACLE[name](pred, gt, trimap)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=TOLERANCE[name], abs=1e-12), (name, got, want)


@pytest.mark.parametrize("name", list(ORACLE))
@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("with_trimap", [False, True])
def test_matches_dim_oracle(name, shape, with_trimap):
    rng = np.random.default_rng(zlib.crc32(f"{name}{shape}".encode()))
    gt = smooth_matte(shape, rng)
    pred = noisy(gt, rng)
    trimap = trimap_of(shape, rng) if with_trimap else None
    if name in ("mse", "mad") and trimap is not None and not (trimap == 128).any():
        trimap[0, 0] = 128
    check_against_oracle(name, pred, gt, trimap)


@pytest.mark.parametrize("seed", range(6))
def test_conn_on_threshold_ties_and_equal_components(seed):
    rng = np.random.default_rng(seed)
    shape = (17, 23) if seed % 2 else (20, 9)
    gt, pred = quantized(shape, rng), quantized(shape, rng)
    pred[rng.random(shape) < 0.3] = 255
    for trimap in (None, trimap_of(shape, rng)):
        check_against_oracle("conn_error", pred, gt, trimap)
        check_against_oracle("conn_error", pred.astype(np.float32) / 255, gt.astype(np.float32) / 255, trimap)


def test_conn_value_on_a_threshold_passes_it():
    # pred = 51/255 = 0.2 exactly: it reaches t_2, so l = t_2, d_pred = 0 -> phi 1; gt = 1 gives
    # phi 1 - 0.8. If 0.2 failed t_2, l would be 0.1 and the error 0.9 / 1000.
    for pred, gt in ((np.uint8([[51]]), np.uint8([[255]])),
                     (np.float32([[0.2]]), np.float32([[1.0]])),
                     (np.float64([[0.2]]), np.float64([[1.0]]))):
        assert metrics.conn_error(pred, gt) == pytest.approx(0.8 / 1000, rel=1e-6)


def test_conn_equal_components_tie_in_column_major_order():
    # Two one-pixel components of every level mask: A at (row 0, col 2) comes first in row-major
    # order, B at (row 2, col 0) in column-major order, so MATLAB keeps B. A (pred 128/255, gt
    # 1) is then never in Omega: l = 0 and the error is |(1 - 128/255) - 0|. Had A been kept
    # (row-major), A would leave at t_6 with l = 0.5: error |1 - 0.5| = 0.5.
    gt = np.zeros((3, 3), np.uint8)
    gt[0, 2] = gt[2, 0] = 255
    pred = gt.copy()
    pred[0, 2] = 128
    assert metrics.conn_error(pred, gt) == pytest.approx((1 - 128 / 255) / 1000, rel=1e-6)
    assert metrics.conn_error(pred.T.copy(), gt.T.copy()) == pytest.approx(0.5 / 1000, rel=1e-6)


def test_conn_largest_component_wins():
    # A 2-pixel component (pred = gt = 1) and a 1-pixel one where pred = 170/255, gt = 1: the
    # small one leaves at t_1 (l = 0), so its phi are 1 - 2/3 and 1 - 1: error 1/3. Had it been
    # kept (it comes first in column-major order), it would leave at t_7 with l = 0.6:
    # d_pred = 0.067 < 0.15, phi 1 and 1 - 0.4, error 0.4.
    gt = np.uint8([[255, 0, 255, 255]])
    pred = np.uint8([[170, 0, 255, 255]])
    assert metrics.conn_error(pred, gt) == pytest.approx((1 - 170 / 255) / 1000, rel=1e-6)


def test_grad_stretches_predictions_that_never_reach_one():
    rng = np.random.default_rng(3)
    gt = smooth_matte((30, 40), rng).astype(np.float64) / 255
    assert metrics.grad_error(0.2 + 0.5 * gt, gt) < 1e-15  # mat2gray maps it back onto gt
    assert metrics.grad_error(0.5 * gt, gt) == pytest.approx(dim.grad(0.5 * gt, gt), abs=1e-15)
    assert metrics.grad_error(gt * gt, gt) == pytest.approx(dim.grad(gt * gt, gt), rel=1e-9)


def test_constant_mattes_have_zero_gradient():
    a, b = np.full((9, 12), 0.3), np.full((9, 12), 1.0)
    assert metrics.grad_error(a, b) < 1e-20
    # float32 filtering leaves rounding residues of the antisymmetric taps
    assert metrics.grad_error(np.zeros((5, 5), np.uint8), np.full((5, 5), 7, np.uint8)) < 1e-15


def test_empty_unknown_region():
    rng = np.random.default_rng(4)
    gt = smooth_matte((12, 14), rng)
    pred = noisy(gt, rng)
    known = np.where(rng.random(gt.shape) < 0.5, 0, 255).astype(np.uint8)
    for name in ("sad", "grad_error", "conn_error", "sad_t"):
        assert getattr(metrics, name)(pred, gt, known) == 0.0
    for name in ("mse", "mad"):
        with pytest.warns(RuntimeWarning, match="no pixel to count"):
            assert math.isnan(getattr(metrics, name)(pred, gt, known))


def test_dtypes_and_containers_agree():
    rng = np.random.default_rng(5)
    gt, pred = smooth_matte((19, 26), rng), quantized((19, 26), rng)
    trimap = trimap_of(gt.shape, rng)
    for name in ORACLE:
        fn = getattr(metrics, name)
        u8 = fn(pred, gt, trimap)
        f32 = fn(pred.astype(np.float32) / 255, gt.astype(np.float32) / 255, trimap)
        f64 = fn(pred / 255.0, gt / 255.0, trimap)
        mixed = fn(pred, gt.astype(np.float32) / 255, trimap)
        tensor = fn(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(trimap))
        assert u8 == f32 == mixed == pytest.approx(f64, rel=1e-5, abs=1e-12), name
        assert tensor.dtype == torch.float64 and tensor.shape == () and float(tensor) == u8, name


def test_float_trimaps_and_bool_masks():
    rng = np.random.default_rng(6)
    gt = smooth_matte((15, 16), rng)
    pred = noisy(gt, rng)
    trimap = trimap_of(gt.shape, rng)
    want = metrics.sad(pred, gt, trimap)
    assert metrics.sad(pred, gt, trimap.astype(np.float32) / 255) == want
    halves = np.select([trimap == 0, trimap == 255], [0.0, 1.0], 0.5)
    assert metrics.sad(pred, gt, halves) == want
    assert metrics.sad(pred, gt, trimap == 128) == want


def test_layouts_and_batches():
    rng = np.random.default_rng(7)
    gts = np.stack([smooth_matte((10, 13), rng) for _ in range(3)])
    preds = np.stack([noisy(g, rng) for g in gts])
    trimaps = np.stack([trimap_of((10, 13), rng) for _ in range(3)])
    for name in ORACLE:
        fn = getattr(metrics, name)
        singles = np.array([fn(p, g, t) for p, g, t in zip(preds, gts, trimaps)])
        batched = fn(preds, gts, trimaps)
        assert isinstance(batched, np.ndarray) and batched.shape == (3,)
        np.testing.assert_allclose(batched, singles, rtol=1e-12)
        np.testing.assert_allclose(fn(preds[:, None], gts[:, None], trimaps[:, None]), singles, rtol=1e-12)
        on_torch = fn(torch.from_numpy(preds)[:, None], gts, trimaps)  # NumPy joins the tensor
        assert isinstance(on_torch, torch.Tensor) and on_torch.shape == (3,)
        np.testing.assert_allclose(on_torch.numpy(), singles, rtol=1e-12)


def test_force_known():
    rng = np.random.default_rng(8)
    gt = smooth_matte((21, 18), rng)
    pred = noisy(gt, rng)
    trimap = trimap_of(gt.shape, rng)
    forced = np.where(trimap == 0, 0, np.where(trimap == 255, 255, pred)).astype(np.uint8)
    for name in ORACLE:
        got = getattr(metrics, name)(pred, gt, trimap, force_known=True)
        assert got == pytest.approx(ORACLE[name](forced, gt, trimap), rel=TOLERANCE[name], abs=1e-12)
    # Forcing changes Grad and Conn (they see known pixels), not SAD.
    assert metrics.sad(pred, gt, trimap, force_known=True) == metrics.sad(pred, gt, trimap)
    assert metrics.conn_error(pred, gt, trimap, force_known=True) != metrics.conn_error(pred, gt, trimap)
    assert metrics.grad_error(pred, gt, trimap, force_known=True) != metrics.grad_error(pred, gt, trimap)


def test_sad_t():
    rng = np.random.default_rng(9)
    gt = smooth_matte((25, 30), rng)
    gt[:, :6] = 0
    gt[:, -6:] = 255
    pred = noisy(gt, rng)
    trimap = trimap_of(gt.shape, rng)
    assert metrics.sad_t(pred, gt, trimap) == metrics.sad(pred, gt, trimap)
    for band in (1, 3, 7):
        r = band // 2
        H, W = gt.shape
        inside = np.zeros(gt.shape, bool)
        for y in range(H):
            for x in range(W):
                window = gt[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
                inside[y, x] = (window > 0).any() and (window < 255).any()
        want = dim.sad(pred, gt, np.where(inside, 128, 0))
        assert metrics.sad_t(pred, gt, band_size=band) == pytest.approx(want, rel=1e-6)
    assert metrics.sad_t(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0


def test_nan_propagates():
    gt = np.linspace(0, 1, 48).reshape(6, 8)
    pred = gt.copy() * 0.9
    pred[2, 3] = np.nan
    trimap = np.full(gt.shape, 128, np.uint8)
    trimap[2, 3] = 0  # the NaN pixel is not counted
    for name in ("sad", "mse", "mad", "conn_error"):
        assert math.isnan(getattr(metrics, name)(pred, gt)), name
        assert not math.isnan(getattr(metrics, name)(pred, gt, trimap)), name
    assert math.isnan(metrics.grad_error(pred, gt, trimap))  # the stretch sees every pixel


@needs_cuda
@pytest.mark.cuda
def test_cuda_agrees_with_cpu():
    rng = np.random.default_rng(10)
    gt = np.stack([smooth_matte((70, 93), rng) for _ in range(2)])
    pred = np.stack([quantized((70, 93), rng) for _ in range(2)])
    trimap = np.stack([trimap_of((70, 93), rng) for _ in range(2)])
    for name in ("sad", "mse", "mad", "grad_error", "conn_error", "sad_t"):
        fn = getattr(metrics, name)
        on_gpu = fn(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda(), torch.from_numpy(trimap).cuda())
        assert on_gpu.device.type == "cuda"
        np.testing.assert_allclose(on_gpu.cpu().numpy(), fn(pred, gt, trimap), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: metrics.sad(np.zeros((2, 3, 4, 5)), np.zeros((2, 3, 4, 5))), ValueError,
         r"fastmatte.metrics.sad: pred must be \[H, W\], \[B, H, W\] or \[B, 1, H, W\], got \[2, 3, 4, 5\]"),
        (lambda: metrics.mse(np.zeros((4, 5)), np.zeros((5, 4))), ValueError,
         r"fastmatte.metrics.mse: gt must have pred's size \[4, 5\]"),
        (lambda: metrics.grad_error(np.zeros((4, 5)), np.zeros((4, 5)), np.zeros((4, 6), np.uint8)),
         ValueError, "trimap must have pred's size"),
        (lambda: metrics.conn_error(np.zeros((4, 5), np.int64), np.zeros((4, 5))), ValueError,
         r"pred must be uint8 \(0..255\) or floating point \(0..1\), got torch.int64"),
        (lambda: metrics.sad([[0.0]], np.zeros((1, 1))), TypeError,
         "fastmatte.metrics.sad: pred must be a NumPy array or a torch tensor, got list"),
        (lambda: metrics.sad(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2), np.int32)), ValueError,
         r"trimap must be uint8 \(0/128/255\), float \(0..1\) or bool"),
        (lambda: metrics.conn_error(np.zeros((2, 2)), np.zeros((2, 2)), force_known=True), ValueError,
         "force_known=True needs a trimap"),
        (lambda: metrics.grad_error(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2), bool), force_known=True),
         ValueError, "needs a 0/128/255 trimap, not a bool mask"),
        (lambda: metrics.sad_t(np.zeros((2, 2)), np.zeros((2, 2)), band_size=4), ValueError, "band_size must be odd"),
        (lambda: metrics.sad(np.zeros((2, 2), np.complex64), np.zeros((2, 2))), ValueError, "got NumPy complex64"),
        (lambda: metrics.grad_error(np.zeros((2, 2)), np.zeros((2, 2)), backend="cuda"), ValueError,
         "backend='cuda' cannot run"),
    ],
)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_empty_images():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in ("sad", "mse", "grad_error", "conn_error", "sad_t"):
            out = getattr(metrics, name)(np.zeros((0, 4, 5)), np.zeros((0, 4, 5)))
            assert out.shape == (0,)
            zero_area = getattr(metrics, name)(np.zeros((2, 0, 5)), np.zeros((2, 0, 5)))
            assert zero_area.shape == (2,)


def test_benchmark_baseline_computes_the_same_metrics():
    # fastmatte bench times the metrics against NumPy/SciPy code: it must compute the same values.
    from fastmatte.bench import metrics as bm

    pred, gt, trimap = bm.portrait_mattes(120, 200)
    assert (trimap == 128).mean() > 0.02
    for ours, theirs in ((metrics.sad, bm.numpy_sad), (metrics.mse, bm.numpy_mse),
                         (metrics.grad_error, bm.numpy_grad), (metrics.conn_error, bm.numpy_conn)):
        assert ours(pred, gt, trimap) == pytest.approx(theirs(pred, gt, trimap), rel=1e-4)


@pytest.mark.parametrize("name", ["sad", "mse", "mad", "grad_error", "conn_error", "sad_t"])
def test_torch_compile_fullgraph(name):
    rng = np.random.default_rng(11)
    gt = torch.from_numpy(np.stack([smooth_matte((14, 19), rng) for _ in range(2)]))
    pred = torch.from_numpy(noisy(gt.numpy(), rng))
    trimap = torch.from_numpy(trimap_of(gt.shape, rng))
    fn = getattr(metrics, name)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(pred, gt, trimap), fn(pred, gt, trimap), rtol=1e-6, atol=1e-12)
