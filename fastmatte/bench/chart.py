"""A PNG bar chart of model benchmark records, drawn with OpenCV (matplotlib is not a dependency)."""
import math
from pathlib import Path

import cv2
import numpy as np

from fastmatte.io.atomic import write_file

# BGR, one per backend; a backend not listed gets grey
COLORS = {"fastmatte": (60, 140, 20), "eager": (40, 90, 220), "compile": (200, 120, 30),
          "cuda-graph": (30, 200, 110), "onnxruntime": (150, 50, 150)}
FONT = cv2.FONT_HERSHEY_SIMPLEX
WIDTH, HEIGHT = 960, 600
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 90, 70


def write_chart(records, path) -> Path:
    """Draw FPS (fps_median) per resolution (groups, in record order) and backend (bars, with
    value labels; "failed" where a record has no figure) into the PNG file `path`; the title
    names model, device, torch, precision and, where records have them, the weights (RVM's
    "released" or "random") of the first record. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"chart path must end in .png; got {str(path)!r}")
    if not records:
        raise ValueError("records is empty: nothing to draw")
    resolutions = list(dict.fromkeys(r["resolution"] for r in records))
    backends = list(dict.fromkeys(r["backend"] for r in records))
    fps = {(r["resolution"], r["backend"]): r["fps_median"] for r in records}
    step = _tick_step(max([v for v in fps.values() if v] or [1.0]) * 1.1 / 5)
    top = step * math.ceil(max([v for v in fps.values() if v] or [1.0]) * 1.1 / step)

    canvas = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    first = records[0]
    _text(canvas, f"{first['model']} end to end, batch 1: frames per second", (LEFT, 32), 0.75, 2)
    subtitle = f"{first['device']} | torch {first['torch']} | {first['precision']}" + \
        (f" | {first['weights']} weights" if "weights" in first else "")
    _text(canvas, _ascii(subtitle), (LEFT, 60), 0.5)
    plot_h, plot_w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    base = TOP + plot_h
    _text(canvas, "FPS", (8, TOP - 22), 0.5, 2)
    for tick in range(round(top / step) + 1):  # horizontal grid lines with their FPS values
        y = base - round(plot_h * tick * step / top)
        cv2.line(canvas, (LEFT, y), (WIDTH - RIGHT, y), (225, 225, 225), 1)
        _text(canvas, f"{tick * step:g}", (8, y + 5), 0.45)
    group_w = plot_w / len(resolutions)
    bar_w = group_w * 0.8 / len(backends)
    for g, res in enumerate(resolutions):
        x0 = LEFT + g * group_w + group_w * 0.1
        _text(canvas, res, (round(x0 + group_w * 0.4), base + 28), 0.6, 2, center=True)
        for b, backend in enumerate(backends):
            left, value = round(x0 + b * bar_w), fps.get((res, backend))
            right = round(x0 + (b + 1) * bar_w) - 4
            if not value:
                _text(canvas, "failed" if (res, backend) in fps else "", (left, base - 8), 0.45)
                continue
            y = base - round(plot_h * value / top)
            cv2.rectangle(canvas, (left, y), (right, base), COLORS.get(backend, (150, 150, 150)), cv2.FILLED)
            _text(canvas, f"{value:.3g}", ((left + right) // 2, y - 6), 0.5, center=True)
    cv2.line(canvas, (LEFT, base), (WIDTH - RIGHT, base), (0, 0, 0), 1)
    for b, backend in enumerate(backends):  # legend, bottom right
        x = WIDTH - RIGHT - 130 * (len(backends) - b)
        cv2.rectangle(canvas, (x, HEIGHT - 30), (x + 16, HEIGHT - 16), COLORS.get(backend, (150, 150, 150)),
                      cv2.FILLED)
        _text(canvas, backend, (x + 22, HEIGHT - 17), 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", canvas)  # not cv2.imwrite: that fails silently on some paths
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the chart")
    write_file(path, png.tobytes())
    return path


def _tick_step(rough) -> float:
    """The 1, 2 or 5 x 10^n at or above `rough`: grid values a reader can add up."""
    power = 10 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


def _text(canvas, text, origin, scale, thickness=1, center=False):
    x, y = origin
    if center:
        x -= cv2.getTextSize(text, FONT, scale, thickness)[0][0] // 2
    cv2.putText(canvas, text, (x, y), FONT, scale, (20, 20, 20), thickness, cv2.LINE_AA)


def _ascii(text) -> str:
    # OpenCV's Hershey fonts draw ASCII only
    return text.encode("ascii", "replace").decode()
