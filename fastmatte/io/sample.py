"""Synthetic matting data, made here from a seed (nothing is downloaded): a photo-like portrait
with a true alpha for demos and benchmarks, random composites for training tests, and video
clips made from a still photograph by a slow pan and zoom (for the video demo)."""
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fastmatte.io.atomic import check_output_folder
from fastmatte.io.images import write_image
from fastmatte.io.video import VideoWriter

_SHIFT = 4  # cv2 polygon coordinates in 1/16 pixel, for sub-pixel outlines
_SKIN = ((0.93, 0.75, 0.63), (0.80, 0.58, 0.45), (0.56, 0.38, 0.28), (0.98, 0.84, 0.74))
_HAIR = ((0.16, 0.10, 0.06), (0.33, 0.21, 0.12), (0.07, 0.06, 0.05), (0.62, 0.46, 0.27))
_HAIR_CENTER, _HAIR_RX, _HAIR_RY = 0.38, 0.160, 0.190  # the hair mass ellipse, in units of H
CLIP_SIZE = (1280, 720)  # (width, height) of the clips made from a photo


def sample_portrait(height=1080, width=1920, seed=0):
    """A head-and-shoulders portrait photo and its true alpha, the same for the same arguments.

    The person (skin-shaded face, neck, clothes, a hair mass and, around the top and sides,
    about 1.5 H thin semi-transparent hair strands) is composited over a blurred room-like background
    (gradients, windows, bokeh lights), with mild sensor noise. The alpha is 1 inside, 0 outside,
    and fractional on a ~1-2 pixel anti-aliased outline of the body and in the hair band, which
    reaches about 0.1 H beyond the head.
    height, width: ints >= 64 (the figure scales with the height and is centered).
    Returns (image uint8 [H, W, 3] RGB, alpha uint8 [H, W], 255 = opaque).
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 64:
            raise ValueError(f"fastmatte.sample_portrait: {name} must be an int >= 64, got {value!r}")
    rng = np.random.default_rng(seed)
    H, W, s = height, width, float(height)
    cx = W / 2 + rng.uniform(-0.04, 0.04) * W
    # The person is drawn in the columns it can reach only (about 0.9 H wide): half the work at HD.
    x0, x1 = max(0, math.floor(cx - 0.45 * s)), min(W, math.ceil(cx + 0.45 * s))
    color, alpha = _person(H, x1 - x0, s, cx - x0, rng)
    image = _background(H, W, rng)
    image[:, x0:x1] *= 1 - alpha[..., None]
    image[:, x0:x1] += color
    image += rng.standard_normal((H, W, 1), np.float32) * 0.006  # sensor grain (luma)
    full_alpha = np.zeros((H, W), np.uint8)
    full_alpha[:, x0:x1] = np.clip(alpha * 255 + 0.5, 0, 255)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), full_alpha


def _person(H, W, s, cx, rng):
    """Premultiplied color [H, W, 3] and alpha [H, W] (float32) of the person centered at column cx."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    skin = np.array(_SKIN[rng.integers(len(_SKIN))], np.float32)
    hair = np.array(_HAIR[rng.integers(len(_HAIR))], np.float32)
    cloth = rng.uniform(0.1, 0.7, 3).astype(np.float32)
    # Light from the upper left, as in most portrait setups.
    light = 1.0 - 0.25 * np.clip((x - cx) / (0.4 * s), -1, 1) - 0.15 * (y / s)

    color = np.zeros((H, W, 3), np.float32)  # premultiplied, composited with the "over" operator
    alpha = np.zeros((H, W), np.float32)
    hair_poly = _ellipse(cx, _HAIR_CENTER * s, _HAIR_RX * s, _HAIR_RY * s, rng.uniform(0, 6.3, 6), 0.03)
    hair_cover = cv2.GaussianBlur(_fill(H, W, [hair_poly]), (0, 0), 0.003 * s)
    hair_color = hair * (_hair_texture(H, W, s, cx, rng) * light)[..., None]
    _over(color, alpha, hair_color, hair_cover)
    neck = np.array([[cx - 0.068 * s, 0.48 * s], [cx + 0.068 * s, 0.48 * s],
                     [cx + 0.08 * s, 0.72 * s], [cx - 0.08 * s, 0.72 * s]])
    neck_shade = 0.8 - 0.3 * np.clip((0.57 * s - y) / (0.06 * s), 0, 1)  # shadow under the chin
    _over(color, alpha, skin * (neck_shade * light)[..., None], _fill(H, W, [neck]))
    torso = _torso(cx, s)
    neckline = _fill(H, W, [_ellipse(cx, 0.615 * s, 0.085 * s, 0.055 * s)])
    folds = 0.92 + 0.08 * _smooth_noise(H, W, 0.1 * s, rng)
    _over(color, alpha, cloth * (folds * light)[..., None], _fill(H, W, [torso]) * (1 - neckline))
    face = _fill(H, W, [_ellipse(cx, 0.40 * s, 0.112 * s, 0.150 * s)])
    radial = ((x - cx) / (0.112 * s)) ** 2 + ((y - 0.40 * s) / (0.150 * s)) ** 2
    face_color = skin * ((1.0 - 0.22 * np.clip(radial, 0, 1) ** 2) * light)[..., None]
    _face_features(face_color, s, cx)
    _over(color, alpha, face_color, face)
    forehead = 0.31 * s + 0.06 * s * ((x - cx) / (0.12 * s)) ** 2
    forehead += 0.004 * s * _smooth_noise(H, W, 0.015 * s, rng)  # a slightly uneven fringe
    fringe = hair_cover * np.clip((forehead - y) / (0.006 * s), 0, 1)
    _over(color, alpha, hair_color, fringe)
    _over(color, alpha, hair * (1.1 * light)[..., None], _strands(H, W, s, cx, rng))
    return color, alpha


def write_sample(out_dir, resolution=(1080, 1920), seed=0, force=False):
    """Writes portrait.png (RGB) and portrait_alpha.png (its true alpha, 8-bit gray) into out_dir
    (created if missing), each whole or absent (fastmatte.io.write_image). Before anything is
    drawn or written: an OSError saying why when out_dir cannot be created or written
    (fastmatte.io.atomic.check_output_folder), and FileExistsError naming the existing files
    when they are not to be overwritten (no force); nothing is written then.
    resolution: (height, width). Returns the two paths written."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    paths = out_dir / "portrait.png", out_dir / "portrait_alpha.png"
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise FileExistsError(f"{' and '.join(existing)} already {verb}; pass --force to overwrite")
    image, alpha = sample_portrait(*resolution, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, data in zip(paths, (image, alpha)):
        write_image(path, data, overwrite=force)
    return paths


def pan_zoom_windows(photo_size, frames=48, aspect=16 / 9, zoom=1.15, start=(0.5, 0.6), end=(0.4, 0.0)):
    """The crop windows of a slow pan and zoom across a photo of photo_size (height, width):
    float64 [frames, 4], rows (x, y, width, height) in the photo's pixels (x, y: the window's
    top-left corner; continuous coordinates, 0 at the photo's top-left edge).

    The first window is the largest of the given aspect ratio (width / height) that fits in the
    photo, the last one `zoom` times smaller on each side (zoom >= 1: zoomed in). In between the
    size shrinks geometrically (a constant zoom speed) and the position moves from `start` to
    `end`, both along the smoothstep 3t^2 - 2t^3 of time, so the camera starts and stops gently
    and every step is a small one. Positions are fractions (x, y) of the room the window has to
    move in: (0, 0) puts it in the top-left corner, (1, 1) in the bottom-right, so every window
    lies inside the photo. The defaults tilt up from below the middle of the photo to its top (a
    portrait's face) while drifting a little left. frames: an int >= 1."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"pan_zoom_windows: frames must be an int >= 1, got {frames!r}")
    if not (isinstance(zoom, (int, float)) and math.isfinite(zoom) and zoom >= 1):
        raise ValueError(f"pan_zoom_windows: zoom must be a number >= 1, got {zoom!r}")
    if not (isinstance(aspect, (int, float)) and math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"pan_zoom_windows: aspect must be a number > 0, got {aspect!r}")
    for name, point in (("start", start), ("end", end)):
        if len(point) != 2 or not all(0 <= v <= 1 for v in point):
            raise ValueError(f"pan_zoom_windows: {name} must be (x, y) fractions in 0..1, got {point!r}")
    height, width = photo_size
    first_width = min(width, height * aspect)
    t = np.linspace(0.0, 1.0, frames)
    eased = t * t * (3 - 2 * t)
    size = (first_width * zoom ** -eased)[:, None] * [1.0, 1 / aspect]  # (width, height) per frame
    where = (1 - eased)[:, None] * np.asarray(start) + eased[:, None] * np.asarray(end)  # (x, y) fractions
    corner = where * ([width, height] - size)
    return np.concatenate([corner, size], axis=1)


def pan_zoom_frames(photo, frames=48, size=CLIP_SIZE, zoom=1.15, start=(0.5, 0.6), end=(0.4, 0.0)):
    """A clip made from a still photograph by a slow pan and zoom (see pan_zoom_windows): an
    iterator of `frames` uint8 RGB frames [height, width, 3], size = (width, height), each the
    window of its time resampled (bicubic, sub-pixel placed, so the motion is smooth) to that
    size. The same arguments give the same frames. photo: uint8 RGB [H, W, 3]; a photo larger
    than the frames is first shrunk once with area averaging, so that resampling only enlarges
    and does not alias. Arguments are checked here, before the first frame."""
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 \
            or photo.shape[2] != 3 or 0 in photo.shape:
        got = f"{photo.dtype} {list(photo.shape)}" if isinstance(photo, np.ndarray) else type(photo).__name__
        raise ValueError(f"pan_zoom_frames: photo must be uint8 RGB [H, W, 3], got {got}")
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"pan_zoom_frames: size must be (width, height), positive ints, got {size!r}")
    width, height = size
    windows = pan_zoom_windows(photo.shape[:2], frames, width / height, zoom, start, end)
    shrink = width / windows[0, 2]
    if shrink < 1:
        shrunk = [max(1, round(side * shrink)) for side in photo.shape[1::-1]]  # (width, height)
        photo = cv2.resize(photo, shrunk, interpolation=cv2.INTER_AREA)
        windows = pan_zoom_windows(photo.shape[:2], frames, width / height, zoom, start, end)
    return (_crop(photo, window, size) for window in windows)


def _crop(photo, window, size):
    """The window (x, y, w, h) of photo resampled to size (width, height): pixel centres map to
    pixel centres, so the window's edges land on the frame's edges."""
    x, y, w, _ = window
    scale = size[0] / w
    matrix = np.array([[scale, 0, scale * (0.5 - x) - 0.5], [0, scale, scale * (0.5 - y) - 0.5]])
    return cv2.warpAffine(photo, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)


def write_pan_zoom_clip(photo, path, fps=24.0, size=CLIP_SIZE, overwrite=False, **motion):
    """Writes pan_zoom_frames(photo, size=size, **motion) (by default 48 frames of 1280x720,
    zooming in by 15%) as an mp4v video at `fps` (2 s at the default 24) with
    fastmatte.io.video.VideoWriter: whole or absent, an existing file replaced only with
    overwrite (FileExistsError before any frame is made otherwise). Returns the path."""
    frames = pan_zoom_frames(photo, size=size, **motion)
    with VideoWriter(path, fps, size, overwrite=overwrite) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def synthetic_composites(batch, height, width, generator=0, device="cpu"):
    """Random portrait-like composites for training tests: per image, a head and a body ellipse
    with an anti-aliased outline and semi-transparent hair strands on the upper half of the head,
    in smooth random colors, over a smooth random background with fine texture.

    batch, height, width: ints >= 1 (sizes like 64..128 are meant; it is fast there).
    generator: a torch.Generator (CPU) or an int seed; the same seed gives the same batch.
    Returns a dict of float32 tensors on `device`, all in 0..1: image [B, 3, H, W] (exactly
    alpha * fg + (1 - alpha) * bg), alpha [B, 1, H, W], fg [B, 3, H, W], bg [B, 3, H, W].
    """
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fastmatte.synthetic_composites: {name} must be an int >= 1, got {value!r}")
    if isinstance(generator, torch.Generator):
        gen = generator
    elif isinstance(generator, int) and not isinstance(generator, bool):
        gen = torch.Generator().manual_seed(generator)
    else:
        raise TypeError("fastmatte.synthetic_composites: generator must be a torch.Generator or an int "
                        f"seed, got {type(generator).__name__}")

    def uniform(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=gen)

    B, H, W = batch, height, width
    y = torch.arange(H, dtype=torch.float32).view(1, H, 1)
    x = torch.arange(W, dtype=torch.float32).view(1, 1, W)
    cx, cy = uniform(B, 1, 1, low=0.35, high=0.65) * W, uniform(B, 1, 1, low=0.3, high=0.45) * H
    rx, ry = uniform(B, 1, 1, low=0.12, high=0.2) * W, uniform(B, 1, 1, low=0.15, high=0.25) * H
    dx, dy = (x - cx) / rx, (y - cy) / ry
    head = (dx ** 2 + dy ** 2).sqrt()
    body = (((x - cx) / (2.2 * rx)) ** 2 + ((y - cy - 2.6 * ry) / (1.8 * ry)) ** 2).sqrt()
    # Anti-aliased outline: coverage falls from 1 to 0 over about one pixel (1 / rx head radii).
    solid = ((1 - torch.minimum(head, body)) * rx + 0.5).clamp(0, 1)
    # Strands: angular stripes of random frequency fading out over 0.4 head radii, upper half only.
    angle = torch.atan2(dy, dx)
    freq = uniform(B, 1, 1, low=25, high=60).round()
    stripes = torch.cos(freq * angle + uniform(B, 1, 1, high=6.3)).clamp_min(0) ** 4
    fade = (1 - (head - 1) / 0.4).clamp(0, 1) * (head > 1) * (-dy).clamp(0, 1)
    alpha = torch.maximum(solid, stripes * fade * uniform(B, 1, 1, low=0.5, high=0.9))
    fg = _smooth_field(B, H, W, 4, gen, uniform(B, 3, 1, 1, high=0.8), 0.3)
    bg = _smooth_field(B, H, W, 8, gen, uniform(B, 3, 1, 1), 0.5)
    bg = (bg + 0.05 * torch.randn(B, 1, H, W, generator=gen)).clamp(0, 1)
    alpha = alpha.unsqueeze(1)
    image = alpha * fg + (1 - alpha) * bg
    return {name: t.to(device) for name, t in (("image", image), ("alpha", alpha), ("fg", fg), ("bg", bg))}


def _smooth_field(B, H, W, cells, gen, base, amount):
    """base [B, 3, 1, 1] colors varied by a bilinearly upsampled cells x cells random field."""
    field = torch.rand(B, 3, cells, cells, generator=gen) - 0.5
    field = F.interpolate(field, size=(H, W), mode="bilinear", align_corners=False)
    return (base + amount * field).clamp(0, 1)


def _over(color, alpha, layer_color, layer_alpha):
    """Composites a layer (straight color [H, W, 3], coverage [H, W]) over the premultiplied
    (color, alpha) accumulators, in place."""
    color *= (1 - layer_alpha)[..., None]
    color += layer_color * layer_alpha[..., None]
    alpha *= 1 - layer_alpha
    alpha += layer_alpha


def _fill(H, W, polygons):
    """Anti-aliased coverage in 0..1 (float32 [H, W]) of polygons given in pixel coordinates."""
    canvas = np.zeros((H, W), np.uint8)
    points = [np.round(np.asarray(p) * (1 << _SHIFT)).astype(np.int32) for p in polygons]
    cv2.fillPoly(canvas, points, 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas.astype(np.float32) / 255


def _ellipse(cx, cy, rx, ry, phases=None, wobble=0.0, n=720):
    """Outline [n, 2] of an ellipse whose radius wobbles by up to `wobble` (harmonics 3..8)."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    radius = np.ones_like(t)
    if phases is not None:
        for k, phase in enumerate(phases, start=3):
            radius += wobble / len(phases) * np.sin(k * t + phase)
    return np.stack([cx + rx * radius * np.cos(t), cy + ry * radius * np.sin(t)], axis=1)


def _torso(cx, s):
    """Outline [n, 2] of the shoulders: flat at the neck, sloping down (trapezius) into a round
    shoulder (an arc joining the slope tangentially), then the arms straight down past the bottom."""
    slope, radius, joint = 0.35, 0.09, 0.30  # in units of H
    top = 0.62 + slope * (np.linspace(0, joint, 40) - 0.07).clip(0)
    u_slope = np.linspace(0, joint, 40)
    phi = np.linspace(math.atan(slope), math.pi / 2, 30)  # the arc, its tangent turning to vertical
    u_arc = joint + radius * (np.sin(phi) - math.sin(phi[0]))
    y_arc = top[-1] + radius * (math.cos(phi[0]) - np.cos(phi))
    u = np.concatenate([u_slope, u_arc, [u_arc[-1] + 0.03]])
    v = np.concatenate([top, y_arc, [1.1]])
    right = np.stack([cx + u * s, v * s], 1)
    left = right[::-1] * [-1, 1] + [2 * cx, 0]
    return np.concatenate([left, right])


def _smooth_noise(H, W, cell, rng):
    """Smooth noise in -1..1 with features about `cell` pixels wide (float32 [H, W])."""
    h, w = max(2, round(H / cell)), max(2, round(W / cell))
    coarse = rng.uniform(-1, 1, (h, w)).astype(np.float32)
    return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _bezier(start, end, bend, points=12):
    """Points [points, 2] of quadratic Bezier curves from start to end [N, 2], bulging by bend."""
    control = (start + end) / 2 + bend
    t = np.linspace(0, 1, points)[None, :, None]
    return (1 - t) ** 2 * start[:, None] + 2 * t * (1 - t) * control[:, None] + t ** 2 * end[:, None]


def _strands(H, W, s, cx, rng):
    """Coverage [H, W] of thin hair strands leaving the hair mass over the top and the sides: they
    start inside its edge and run mostly along it, a little outward, the long ones drooping."""
    count = max(300, int(1.5 * H))
    theta = rng.uniform(0.85 * math.pi, 2.15 * math.pi, count)  # the upper half and a little more
    inner = rng.uniform(0.85, 1.0, count)
    rx, ry, cy = _HAIR_RX * s, _HAIR_RY * s, _HAIR_CENTER * s
    start = np.stack([cx + rx * inner * np.cos(theta), cy + ry * inner * np.sin(theta)], 1)
    normal = np.stack([np.cos(theta), np.sin(theta)], 1)
    tangent = np.stack([-normal[:, 1], normal[:, 0]], 1)
    # Along the outline, pointing down the sides (towards larger y) and either way on top.
    way = np.where(np.abs(np.cos(theta)) > 0.6, np.sign(tangent[:, 1] + 1e-9), rng.choice([-1, 1], count))
    lift = rng.normal(0.3, 0.25, count)[:, None]
    direction = np.cos(lift) * tangent * way[:, None] + np.sin(lift) * normal
    length = (0.015 * s + rng.exponential(0.04 * s, count).clip(0, 0.14 * s))[:, None]
    end = start + direction * length + np.array([0.0, 0.25]) * length ** 2 / (0.1 * s)
    bend = -normal * length * rng.uniform(0.0, 0.3, (count, 1)) + rng.normal(0, 0.08, (count, 2)) * length
    curves = _bezier(start, end, bend, points=16)
    layer = np.zeros((H, W), np.uint8)
    thickness = max(1, round(H / 1400))
    levels = rng.integers(0, 6, count)
    for level in range(6):  # one cv2 call per opacity level
        points = [np.round(c * (1 << _SHIFT)).astype(np.int32) for c in curves[levels == level]]
        cv2.polylines(layer, points, False, int(70 + 30 * level), thickness, cv2.LINE_AA, _SHIFT)
    return layer.astype(np.float32) / 255


def _hair_texture(H, W, s, cx, rng):
    """Brightness [H, W] of the hair mass, around 1: streaks from the crown down the sides."""
    layer = np.full((H, W), 128, np.uint8)
    count = max(200, H // 2)
    crown = np.stack([cx + rng.normal(0, 0.02 * s, count), np.full(count, 0.21 * s)], 1)
    side = rng.uniform(-1.1, 1.1, count)
    tip = np.stack([cx + _HAIR_RX * s * side, (0.30 + 0.22 * np.abs(side) ** 2) * s], 1)
    bend = np.stack([np.sign(side) * 0.04 * s, np.full(count, -0.06 * s)], 1) * np.abs(side)[:, None]
    points = [np.round(c * (1 << _SHIFT)).astype(np.int32) for c in _bezier(crown, tip, bend)]
    for value, group in ((70, points[::2]), (190, points[1::2])):
        cv2.polylines(layer, group, False, value, max(1, round(H / 540)), cv2.LINE_AA, _SHIFT)
    return 0.55 + 0.9 * cv2.GaussianBlur(layer, (0, 0), 0.8).astype(np.float32) / 255


def _face_features(face, s, cx):
    """Eyes, brows, nose shadow and lips painted softly into the face color [H, W, 3], in place."""
    top, left = int(0.3 * s), max(0, int(cx - 0.1 * s))  # the features' box, drawn there only
    face = face[top:int(0.52 * s), left:int(cx + 0.1 * s)]
    cx -= left
    H, W = face.shape[:2]
    eye_y, dark = 0.385 * s, (0.12, 0.08, 0.07)
    features = [((0.006, 0.44, 0.012, 0.025), (0.45, 0.30, 0.25), 0.25),  # nose shadow
                ((0.0, 0.492, 0.035, 0.010), (0.65, 0.28, 0.28), 0.7)]  # lips
    for side in (-1, 1):
        features += [((side * 0.045, eye_y / s, 0.020, 0.008), dark, 0.9),
                     ((side * 0.047, eye_y / s - 0.03, 0.026, 0.005), dark, 0.7)]
    for (dx, y, rx, ry), color, strength in features:
        outline = _ellipse(cx + dx * s, y * s - top, rx * s, ry * s)
        cover = cv2.GaussianBlur(_fill(H, W, [outline]), (0, 0), 0.0015 * s)
        cover = (cover * strength)[..., None]
        face *= 1 - cover
        face += cover * np.array(color, np.float32)


def _background(H, W, rng):
    """A defocused room: wall gradient, window and shelf rectangles, bokeh discs (float [H, W, 3])."""
    h, w = max(8, H // 8), max(8, W // 8)  # drawn small and upscaled: it is blurred anyway
    top, bottom = _muted(rng, 0.45, 0.9), _muted(rng, 0.15, 0.6)
    t = np.linspace(0, 1, h)[:, None, None]
    room = ((1 - t) * top + t * bottom) * np.ones((1, w, 1))
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(0.05, 0.4) * w, y0 + rng.uniform(0.05, 0.5) * h
        cv2.rectangle(room, (int(x0), int(y0)), (int(x1), int(y1)), _muted(rng, 0.1, 0.95).tolist(), -1)
    for _ in range(rng.integers(10, 25)):
        center = (int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.7)))
        glow = room.copy()
        cv2.circle(glow, center, int(rng.uniform(0.01, 0.04) * w) + 1, _muted(rng, 0.8, 1.0).tolist(), -1)
        room = 0.6 * room + 0.4 * glow
    room = cv2.GaussianBlur(room.astype(np.float32), (0, 0), max(1.0, h / 90))
    room = cv2.resize(room, (W, H), interpolation=cv2.INTER_LINEAR)
    return room * (0.985 + 0.015 * _smooth_noise(H, W, max(2.0, H / 60), rng))[..., None]


def _muted(rng, low, high):
    """A random RGB color of brightness low..high, mostly gray (as walls and furniture are)."""
    gray = rng.uniform(low, high)
    return np.clip(gray + rng.uniform(-0.12, 0.12, 3), 0, 1)


def synthetic_instance_composites(batch, size, seed=0):
    """Random multi-person composites for instance-matting training tests: per image 2 or 3 soft
    elliptical "people" side by side, composited back to front in random colours over a smooth
    background. batch, size: ints >= 1 (square images; 32..128 are meant). Returns (images
    [B, 3, size, size] float32 in 0..1, a list of B tensors [M_i, size, size]: each person's
    visible alpha, the ones in front already taken out, so that they sum to at most 1)."""
    for name, value in (("batch", batch), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fastmatte.synthetic_instance_composites: {name} must be an int >= 1, "
                             f"got {value!r}")
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    images, alphas = [], []
    for _ in range(batch):
        image = torch.rand(3, 1, 1, generator=gen) * (0.5 + 0.5 * x / size)[None]
        visible = []
        for k in range(int(torch.randint(2, 4, (1,), generator=gen))):
            cy = size * (0.3 + 0.4 * torch.rand(1, generator=gen))
            cx = size * (0.2 + 0.3 * k)
            r = (((y - cy) / (size * 0.3)) ** 2 + ((x - cx) / (size * 0.12)) ** 2).sqrt()
            a = ((1 - r) / 0.25).clamp(0, 1)
            visible = [v * (1 - a) for v in visible] + [a]
            image = a * torch.rand(3, 1, 1, generator=gen) + (1 - a) * image
        images.append(image)
        alphas.append(torch.stack(visible))
    return torch.stack(images), alphas
