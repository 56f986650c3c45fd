"""Image grids as PNG files."""

from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from experiments.files import write_atomically


def to_pixels(x: Float[np.ndarray, "*b c h w"]) -> UInt8[np.ndarray, "*b h w c"]:
    """Model space [-1, 1] (channel-first) to uint8 pixels (channel-last), clipped."""
    x = np.moveaxis(np.asarray(x, np.float32), -3, -1)
    return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)


def save_grid(path: Path, images: UInt8[np.ndarray, "rows cols h w c"], scale: int = 1) -> None:
    """Tile images into one PNG, one row per label, with a 1-pixel gap; `scale` enlarges."""
    rows, cols, height, width, channels = images.shape
    canvas = np.full((rows * (height + 1) + 1, cols * (width + 1) + 1, channels), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            canvas[1 + r * (height + 1):][:height, 1 + c * (width + 1):][:, :width] = images[r, c]
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    write_atomically(path, lambda file: picture.save(file, format="PNG"))
