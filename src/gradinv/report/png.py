"""Minimal PNG writing and drawing with numpy only (no Pillow or matplotlib needed)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write an (H, W) grey or (H, W, 3) RGB uint8 array as a PNG file."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("write_png needs an (H, W) or (H, W, 3) uint8 array")
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def image_grid(rows: list[torch.Tensor], *, scale: int = 2, pad: int = 2) -> np.ndarray:
    """Lay out rows of (N, C, H, W) images in [0, 1] as one RGB array, white padding between."""
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[-2:]
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = np.full((len(rows) * cell_h + pad, n * cell_w + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            rgb = img.detach().float().cpu().nan_to_num(0.5).clamp(0, 1)
            if rgb.shape[0] != 3:
                rgb = rgb.mean(0, keepdim=True).expand(3, -1, -1)
            arr = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            arr = arr.repeat(scale, 0).repeat(scale, 1)
            y, x = pad + i * cell_h, pad + j * cell_w
            canvas[y:y + h * scale, x:x + w * scale] = arr
    return canvas


CURVE_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def line_plot(series: dict[str, list[float]], *, width: int = 480, height: int = 240,
              log: bool = True) -> np.ndarray:
    """Rasterise curves (colours in ``CURVE_COLOURS`` order) over a shared x range; log10 y axis."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    m = 10
    canvas[m:height - m, m] = canvas[height - m - 1, m:width - m] = 0
    curves = [np.asarray(v, dtype=np.float64) for v in series.values()]
    if log:
        curves = [np.log10(np.clip(v, 1e-12, None)) for v in curves]
    finite = np.concatenate([v[np.isfinite(v)] for v in curves] + [np.zeros(0)])
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    for colour, values in zip(CURVE_COLOURS * 4, curves):
        if len(values) < 2:
            continue  # nothing to draw, but the curve keeps its colour
        xs = m + 1 + np.linspace(0, width - 2 * m - 2, len(values))
        ys = height - m - 2 - (np.nan_to_num(values, nan=hi) - lo) / (hi - lo) * (height - 2 * m - 3)
        for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
            steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            px = np.linspace(x0, x1, steps).round().astype(int)
            py = np.linspace(y0, y1, steps).round().astype(int)
            canvas[py.clip(0, height - 1), px.clip(0, width - 1)] = colour
    return canvas
