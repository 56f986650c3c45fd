"""Image grids as PNG files."""

from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8

from experiments.files import write_atomically
from experiments.optional import load, picture


def to_pixels(x: Float[np.ndarray, "*b c h w"]) -> UInt8[np.ndarray, "*b h w c"]:
    """Model space [-1, 1] (channel-first) to uint8 pixels (channel-last), clipped."""
    x = np.moveaxis(np.asarray(x, np.float32), -3, -1)
    return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)


GAP, GAP_GREY, MARGIN = 2, 128, 4  # pixels: a grey line shows between white cells and black ones


def _pil():
    return load("PIL.Image", "sample grids"), load("PIL.ImageDraw", "sample grids")


@picture(_pil)
def save_grid(pil, path: Path, images: UInt8[np.ndarray, "rows cols h w c"], scale: int = 1,
              row_names: tuple[str, ...] = (), title: str = "") -> None:
    """Tile images into one PNG, enlarged `scale` times, with `title` above and row r named
    `row_names[r]` on its left, cells apart by grey lines. Without Pillow, says so and
    writes nothing."""
    Image, ImageDraw = pil
    rows, cols, height, width, channels = images.shape
    cells = np.repeat(np.repeat(images, scale, axis=2), scale, axis=3)
    height, width = height * scale, width * scale
    grid = np.full((rows * (height + GAP) + GAP, cols * (width + GAP) + GAP, channels), GAP_GREY, np.uint8)
    for r in range(rows):
        for c in range(cols):
            grid[GAP + r * (height + GAP):][:height, GAP + c * (width + GAP):][:, :width] = cells[r, c]
    grid = Image.fromarray(grid[..., 0] if channels == 1 else grid).convert("RGB")
    draw = ImageDraw.Draw(grid)  # only for measuring text
    label_width = max((draw.textbbox((0, 0), name)[2] for name in row_names), default=0)
    title_height = draw.textbbox((0, 0), title)[3] + 2 * MARGIN if title else 0
    left = label_width + 2 * MARGIN if row_names else 0
    picture = Image.new("RGB", (left + grid.width, title_height + grid.height), "white")
    picture.paste(grid, (left, title_height))
    draw = ImageDraw.Draw(picture)
    if title:
        draw.text((MARGIN, MARGIN), title, fill="black")
    for r, name in enumerate(row_names):
        top = title_height + GAP + r * (height + GAP) + height // 2
        draw.text((left - MARGIN, top), name, fill="black", anchor="rm")
    write_atomically(path, lambda file: picture.save(file, format="PNG"))
