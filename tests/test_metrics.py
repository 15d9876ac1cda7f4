"""fastmatte.metrics against an independent NumPy implementation of the DIM MATLAB code
(tests/dim_metrics_numpy.py), plus cases worked out by hand."""
import math
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
        on_gpu = fn(*(torch.from_numpy(a).cuda() for a in (pred, gt, trimap)))
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
        (lambda: metrics.grad_error(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2), bool),
                                    force_known=True),
         ValueError, "needs a 0/128/255 trimap, not a bool mask"),
        (lambda: metrics.sad_t(np.zeros((2, 2)), np.zeros((2, 2)), band_size=4), ValueError,
         "band_size must be odd"),
        (lambda: metrics.sad(np.zeros((2, 2), np.complex64), np.zeros((2, 2))), ValueError,
         "got NumPy complex64"),
        (lambda: metrics.grad_error(np.zeros((2, 2)), np.zeros((2, 2)), backend="cuda"), ValueError,
         "backend='cuda' cannot run"),
    ],
)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


ALL_METRICS = ["sad", "mse", "mad", "grad_error", "conn_error", "sad_t"]


@pytest.mark.parametrize("name", ALL_METRICS)
def test_empty_batch_gives_no_values_and_images_without_pixels_are_refused(name):
    fn = getattr(metrics, name)
    assert fn(np.zeros((0, 4, 5)), np.zeros((0, 4, 5))).shape == (0,)
    for shape in ((2, 0, 5), (0, 7), (3, 1, 4, 0)):
        with pytest.raises(ValueError, match=rf"fastmatte.metrics.{name}: pred has no pixels \(size"):
            fn(np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))


@pytest.mark.parametrize("name", ALL_METRICS)
@pytest.mark.parametrize("channels", [3, 4, 1])
def test_channels_last_images_are_refused(name, channels):
    rng = np.random.default_rng(12)
    gt = smooth_matte((12, 15), rng)
    color = np.repeat(gt[..., None], channels, axis=2)
    fn = getattr(metrics, name)
    for args, argument in (((color, gt), "pred"), ((gt, color), "gt"), ((gt, gt, color), "trimap")):
        with pytest.raises(ValueError, match=rf"metrics.{name}: {argument} is \[12, 15, {channels}\]: "
                                             rf"an image with {channels} channel\(s\) last where a matte "
                                             "is expected"):
            fn(*args)
    # The way to pass a batch of narrow images: [B, 1, H, W].
    narrow = np.stack([smooth_matte((9, channels), rng) for _ in range(2)])[:, None]
    assert fn(narrow, narrow).shape == (2,)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_float_mattes_outside_0_1_are_refused(name):
    rng = np.random.default_rng(13)
    gt = smooth_matte((14, 16), rng)
    gt[0, :2] = 0, 255
    fn = getattr(metrics, name)
    as_255 = gt.astype(np.float32)  # a float TIFF stored 0..255
    message = (rf"fastmatte.metrics.{name}: pred holds float values from 0 to 255, outside 0..1: it looks "
               r"like 0..255 data; divide it by 255 or pass it as uint8")
    with pytest.raises(metrics.MetricInputError, match=message) as caught:
        fn(as_255, gt)
    assert (caught.value.argument, caught.value.kind) == ("pred", "0..255 floats")
    overshoot = gt / 255.0 * 1.02 - 0.01  # e.g. bicubic resampling
    message = r"gt holds float values from -0.01 to 1.01, outside 0..1; float mattes are 0..1: clip it"
    with pytest.raises(metrics.MetricInputError, match=message):
        fn(gt, overshoot)
    assert np.isfinite(fn(np.clip(overshoot, 0, 1), gt))
    assert fn(as_255, gt, check=False) is not None  # asked not to check: no error
    nan_inside = gt / 255.0
    nan_inside[3, 4] = np.nan  # NaN is not out of range: it propagates (test_nan_propagates)
    fn(nan_inside, gt)
    as_255[3, 4] = np.nan  # nor does it hide values that are
    with pytest.raises(metrics.MetricInputError, match="from 0 to 255, outside 0..1: it looks like 0..255"):
        fn(as_255, gt)


def jpeg_like(trimap, rng, noise=40):
    """The trimap with values moved by up to `noise` (clipped): what JPEG does to one."""
    moved = trimap.astype(int) + rng.integers(-noise, noise + 1, trimap.shape)
    return np.clip(moved, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_trimap_values_other_than_0_128_255_are_refused_or_snapped(name):
    rng = np.random.default_rng(14)
    gt = smooth_matte((24, 30), rng)
    pred = noisy(gt, rng)
    trimap = trimap_of(gt.shape, rng)
    fn = getattr(metrics, name)
    want = fn(pred, gt, trimap)
    unknown_127 = np.where(trimap == 128, 127, trimap).astype(np.uint8)
    n = int((trimap == 128).sum())
    message = rf"fastmatte.metrics.{name}: trimap holds values other than 0, 128, 255: 127 \({n} pixels\); "
    with pytest.raises(metrics.MetricInputError, match=message + "pass snap_trimap=True"):
        fn(pred, gt, unknown_127)
    with pytest.warns(RuntimeWarning, match=f"snapped {n} trimap pixels to the nearest of 0, 128, 255"):
        assert fn(pred, gt, unknown_127, snap_trimap=True) == want
    noisy_trimap = jpeg_like(trimap, rng)
    with pytest.warns(RuntimeWarning, match="snapped"):
        assert fn(pred, gt, noisy_trimap, snap_trimap=True) == want
    assert fn(pred, gt, trimap, snap_trimap=True) == want  # nothing to snap, nothing said


def test_trimap_error_lists_the_values_found_most_frequent_first():
    trimap = np.full((10, 10), 128, np.uint8)
    trimap[0, :7] = 64
    trimap[1, :2] = 3
    trimap[2, 0] = 200
    with pytest.raises(metrics.MetricInputError, match=r"values other than 0, 128, 255: 64 \(7 pixels\), "
                                                      r"3 \(2 pixels\), 200 \(1 pixel\);") as caught:
        metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), trimap)
    assert caught.value.argument == "trimap" and caught.value.kind == "trimap values"
    for v in range(256):  # every value alone: refused unless 0, 128 or 255
        one = np.full((10, 10), 128, np.uint8)
        one[5, 5] = v
        if v in (0, 128, 255):
            metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), one)
        else:
            with pytest.raises(metrics.MetricInputError, match=rf"255: {v} \(1 pixel\);"):
                metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), one)
    many = np.arange(100, dtype=np.uint8).reshape(10, 10) + 1
    with pytest.raises(metrics.MetricInputError, match=r"\(1 pixel\) and 94 other values;"):
        metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), many)
    message = r"trimap holds values other than 0, 128, 255 \(read as round\(255 \* t\)\): 64 \(100 pixels\)"
    with pytest.raises(metrics.MetricInputError, match=message):
        metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), np.full((10, 10), 0.25))
    message = r"trimap holds float values from 0 to 255, outside 0..1: it looks like 0..255 data"
    with pytest.raises(metrics.MetricInputError, match=message):
        metrics.sad(np.zeros((10, 10)), np.zeros((10, 10)), np.where(trimap == 128, 255.0, 0.0))


def test_snap_trimap_function():
    # 0..63 -> 0, 64..191 -> 128 (64 is a tie: unknown wins), 192..255 -> 255.
    values = np.arange(256, dtype=np.uint8)
    snapped, changed = metrics.snap_trimap(values)
    assert isinstance(snapped, np.ndarray) and snapped.dtype == np.uint8
    assert snapped.tolist() == [0] * 64 + [128] * 128 + [255] * 64
    assert changed == 253
    tensor, changed = metrics.snap_trimap(torch.tensor([[0.5, 0.49, 1.0]]))
    assert tensor.tolist() == [[128, 128, 255]] and changed == 1  # read as 128, 125, 255
    with pytest.raises(ValueError, match="snap_trimap: trimap must be uint8 or float, got a bool mask"):
        metrics.snap_trimap(np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="snap_trimap=True needs a 0..255 or 0..1 trimap, not a bool mask"):
        metrics.sad(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2), bool), snap_trimap=True)


def test_check_false_skips_value_checks():
    # check=False trusts the caller (DIM reads any trimap value other than 128 as known).
    pred, gt = np.full((3, 4), 0.5), np.zeros((3, 4))
    trimap = np.full((3, 4), 127, np.uint8)
    assert metrics.sad(pred, gt, trimap, check=False) == 0.0
    with pytest.raises(metrics.MetricInputError):
        metrics.sad(pred, gt, trimap, check=True)


@needs_cuda
@pytest.mark.cuda
def test_cuda_checks_values_only_when_asked():
    pred, gt = torch.full((3, 4), 0.5, device="cuda"), torch.zeros(3, 4, device="cuda")
    trimap = torch.full((3, 4), 127, dtype=torch.uint8, device="cuda")
    assert float(metrics.sad(pred, gt, trimap)) == 0.0  # no host sync by default: not checked
    with pytest.raises(metrics.MetricInputError, match=r"127 \(12 pixels\)"):
        metrics.sad(pred, gt, trimap, check=True)
    with pytest.raises(metrics.MetricInputError, match="looks like 0..255 data"):
        metrics.grad_error(pred * 255, gt, check=True)


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
