"""Matting metrics: SAD, MSE, MAD, Grad, Conn and SAD-T exactly as the DIM MATLAB evaluation
code computes them (unless asked otherwise), and E2E-HIM's instance metrics.

Every metric takes ``(pred, gt, trimap=None, *, force_known=False, snap_trimap=False,
check=None)``:

- NumPy arrays or torch tensors, on the CPU or a GPU (NumPy arguments join the device of a
  tensor argument). NumPy in, NumPy out; tensors in, float64 tensors out on their device.
- uint8 mattes are 0..255, float mattes 0..1 (not clamped: values outside 0..1 are an error,
  see check). pred and gt may differ in dtype; the working precision is float32, or float64 if
  either is float64. uint8 pred and gt reach the Grad and Conn kernels as they are.
- Layouts [H, W] (one value: a float, or a 0-d tensor), [B, H, W] or [B, 1, H, W] (one value
  per image, shape [B]). A 3-D array whose last dimension is 1, 3 or 4 is refused as a
  channels-last image (a batch of such narrow images goes as [B, 1, H, W]); so is an image
  with no pixel (H or W = 0). An empty batch (B = 0) gives an empty result.
- trimap, same layout: uint8 with 128 = unknown (0 background, 255 foreground), float 0..1
  read as round(255 * t) (0.5 and 128/255 both mean unknown), or bool marking the pixels to
  count. Only unknown pixels count; without a trimap (whole-image evaluation), every pixel.
  A 0..255 trimap must hold only 0, 128 and 255: any other value is an error listing the
  values found, unless ``snap_trimap=True`` (or ``snap_trimap``, the function) snaps each
  value to the nearest of them (JPEG trimaps, an unknown region saved as 127).
- check: the value checks (float mattes within [0, 1], trimap values) run by default where
  they cost no host synchronization: NumPy arrays and CPU tensors, outside torch.compile.
  For CUDA tensors they run with ``check=True`` (one host synchronization per call), so a
  GPU evaluation loop stays asynchronous by default; ``check=False`` skips them everywhere.
  Errors are ``MetricInputError`` (a ValueError) naming the function and the argument.

Conventions and how to get the others people meet:

- Scales: SAD, Grad and Conn are sums divided by 1000; MSE and MAD are plain means over the
  counted pixels. Many papers print MSE x 1000: multiply yourself.
- A trimap without an unknown (128) pixel: SAD, SAD-T, Grad and Conn are 0 (empty sums, as
  DIM's code gives), MSE and MAD NaN (0 / 0, as DIM's code gives), with a RuntimeWarning on
  CPU data. It is not an error: such images exist in real test sets.
- Known regions are not forced. ``force_known=True`` sets pred to 0 where the trimap is 0 and
  to 1 where it is 255 first (what PaddleSeg and mmediting do); it changes Grad and Conn (the
  filter and the components see the whole image), never SAD, MSE or MAD.
- Grad min-max stretches both mattes (mat2gray), so a prediction that never reaches 1 is
  compared after stretching; ports that divide by 255 instead report other numbers.
- Conn: thresholds k/10 in the working precision, a value on a threshold passes it, theta
  0.15, the largest component's ties broken in column-major order as MATLAB does.
- NaN propagates: into SAD/MSE/MAD/Conn if a counted pixel (for Conn, a counted pixel's own
  value) is NaN, into Grad if any pixel of the image is.
"""
from fastmatte.metrics._inputs import MetricInputError, snap_trimap
from fastmatte.metrics.connectivity import conn_error
from fastmatte.metrics.gradient import grad_error
from fastmatte.metrics.instance import InstanceScores, instance_metrics
from fastmatte.metrics.pixel import mad, mse, sad, sad_t, transition_band

__all__ = ["InstanceScores", "MetricInputError", "conn_error", "grad_error", "instance_metrics", "mad", "mse",
           "sad", "sad_t", "snap_trimap", "transition_band"]
