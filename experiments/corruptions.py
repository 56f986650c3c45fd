"""Common corruptions of CIFAR-10-C (Hendrycks & Dietterich 2019) for uint8 images of any size.

`corrupt(name, images, severity, seed=...)` follows `make_cifar_c.py` of the
authors' `robustness` repository with the parameters of docs/method.md §7: each image
becomes floats in [0, 1], is corrupted, and is written back as the released
files were, `np.uint8(clip(x, 0, 1) * 255)` (truncation). Spatial parameters
(blur radii and sigmas, glass-blur distance, elastic displacements, fog map,
pixelate target) scale with H / 32; pixel-wise ones and zoom ratios stay.
Greyscale images (C = 1) use the single channel wherever the original needs
colour; brightness is then clip(x + delta) and saturate leaves them unchanged.

Randomness: image i of a batch draws from its own generator, seeded by
(seed, name, severity, first_index + i), so its corruption never depends on
its batch mates; a data set corrupted in chunks gives the same images as in
one call when each chunk passes its offset as `first_index`.

Where the original needs other libraries we use numpy, scipy and Pillow only:

- motion_blur, snow: ImageMagick's MotionBlurImage rebuilt as its one-sided
  Gaussian-weighted line of 2 ceil(radius) + 1 taps with edge pixels beyond the
  border, rounded to uint8 like its PNG output; the angle is drawn as the original does.
- elastic_transform: cv2.warpAffine becomes scipy's affine_transform (bilinear,
  "mirror" = reflect-101 borders; OpenCV rounds coordinates to 1/32 pixel).
- defocus_blur: cv2's disk smoothing and filter2D become exact scipy equivalents.
- glass_blur: the original's "swap" of two numpy views copies the neighbour
  into the pixel and leaves the neighbour alone; the released files were made
  that way, so we copy too.
- impulse_noise: each element turns salt or pepper (half each) with
  probability `amount`, as skimage's `random_noise(mode="s&p")`.
- spatter: severities 4-5 ("mud") are exact up to the random draws; severities
  1-3 ("water") replace OpenCV by scipy: Canny without non-maximum suppression
  (Sobel L1 magnitude, hysteresis 50/150 by connected components), an exact
  Euclidean distance transform instead of DIST_L2's 5x5 mask, numpy equalizeHist.
- frost is left out (`LEFT_OUT`): it blends in the authors' frost photographs.
"""

import io
import math
import zlib
from collections.abc import Callable
from types import MappingProxyType

import numpy as np
from jaxtyping import UInt8
from scipy import ndimage

from experiments.optional import load

Pixels = UInt8[np.ndarray, "h w c"]

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRAS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
NOISES = ("gaussian_noise", "shot_noise", "impulse_noise")
LEFT_OUT = MappingProxyType({"frost": "needs the authors' frost photographs"})
SEVERITIES = range(1, 6)

# docs/method.md §7 for 32x32 images, severity 1..5; spatter from make_cifar_c.py:
# (mean, std, sigma, threshold, intensity, mud) of the liquid layer.
SEVERITY_PARAMETERS = MappingProxyType({
    "gaussian_noise": (.04, .06, .08, .09, .10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (.01, .02, .03, .05, .07),
    "defocus_blur": ((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)),
    "glass_blur": ((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),
    "snow": ((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9),
             (.15, .3, 1.75, .55, 10, 4, .9), (.25, .3, 2.25, .6, 12, 6, .85),
             (.3, .3, 1.25, .65, 14, 12, .8)),
    "fog": ((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (.05, .1, .15, .2, .3),
    "contrast": (.75, .5, .4, .3, .15),
    # fractions of the image size: 32 x (alpha, sigma, affine) at 32x32
    "elastic_transform": ((0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05),
                          (.1, .03, .03)),
    "pixelate": (.95, .9, .85, .75, .65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "speckle_noise": (.06, .1, .12, .16, .2),
    "gaussian_blur": (.4, .6, .7, .8, 1),
    "spatter": ((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)),
    "saturate": ((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)),
})  # fmt: skip

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as cv2's RGB2GRAY
_WATER, _MUD = np.array([175, 238, 238]), np.array([63, 42, 20])  # spatter's colours (RGB)
_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])  # spatter's water relief kernel


def _unit(image: Pixels) -> np.ndarray:
    return image / 255.0


def _pixels(x: np.ndarray) -> Pixels:
    """Back to uint8 by truncation, as the released files were written (docs/method.md §7)."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def _scale(image: Pixels) -> float:
    """Spatial parameters are for 32x32 images (docs/method.md §7)."""
    return image.shape[0] / 32


def _grey(x: np.ndarray) -> np.ndarray:
    return x[..., 0] if x.shape[-1] == 1 else x @ _LUMA


def _colour(rgb: np.ndarray, channels: int) -> np.ndarray:
    return rgb / 255 if channels == 3 else np.array([rgb @ _LUMA / 255])


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian(multichannel=True): no mixing across channels, 'nearest' borders."""
    return ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="nearest")


def _per_channel(function: Callable, x: np.ndarray, *args, **kwargs) -> np.ndarray:
    return np.stack([function(x[..., k], *args, **kwargs) for k in range(x.shape[-1])], axis=-1)


def _pil():
    return load("PIL.Image", "the pixelate and jpeg_compression corruptions")


def _colors():  # HSV conversions, for colour images only
    return load("matplotlib.colors", "brightness and saturate of colour images")


def _to_pil(image: Pixels):
    return _pil().fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _from_pil(picture, shape: tuple[int, ...]) -> Pixels:
    return np.asarray(picture, np.uint8).reshape(shape)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Bilinear zoom into the centre, cropped to the input's size (the original's clipped_zoom)."""
    h, w = x.shape[:2]
    crop_h, crop_w = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    zoomed = ndimage.zoom(x[top : top + crop_h, left : left + crop_w], (factor, factor, 1), order=1)
    top, left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[top : top + h, left : left + w]


def _motion_blur_pixels(image: Pixels, radius: float, sigma: float, angle: float) -> Pixels:
    """ImageMagick's MotionBlurImage: a one-sided Gaussian-weighted line of taps from each
    pixel towards `angle` (degrees, clockwise on screen), edge pixels beyond the border."""
    width = 2 * math.ceil(radius) + 1
    steps = np.arange(width)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    radians = math.radians(angle)
    rows = np.ceil(steps * math.sin(radians) - 0.5).astype(int)
    cols = np.ceil(steps * math.cos(radians) - 0.5).astype(int)
    h, w, _ = image.shape
    padded = np.pad(image.astype(np.float64), ((width, width), (width, width), (0, 0)), mode="edge")
    blurred = sum(
        weight * padded[width + dr : width + dr + h, width + dc : width + dc + w]
        for weight, dr, dc in zip(weights, rows, cols)
    )
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)  # its 8-bit PNG output rounds


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """The original's diamond-square height map: side `size` (a power of two), in [0, 1]."""
    heights = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled_mean(total):  # the original's noise scale is wibble squared
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        heights[half::step, half::step] = wibbled_mean(square + np.roll(square, -1, axis=1))
        centres, corners = heights[half::step, half::step], heights[0::step, 0::step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0::step, half::step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half::step, 0::step] = wibbled_mean(top)
        step, wibble = half, wibble / decay
    heights -= heights.min()
    return heights / heights.max()


def _shuffle_locally(image: Pixels, delta: int, rng: np.random.Generator) -> Pixels:
    """One pass of the original's loop over pixels from the bottom right: pixel (r, c) takes
    the value at (r + dy, c + dx), dx, dy uniform on -delta..delta - 1 (randint excludes +delta)."""
    h, w, _ = image.shape
    rows, cols = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    offsets = rng.integers(-delta, delta, size=(len(rows), len(cols), 2))  # (dx, dy)
    out = image.copy()
    if delta == 1:  # every source lies up or left, not visited yet: one gather is the whole loop
        out[rows[:, None], cols] = image[rows[:, None] + offsets[..., 1], cols + offsets[..., 0]]
        return out
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[r, c] = out[r + offsets[i, j, 1], c + offsets[i, j, 0]]
    return out


def _random_affine(x: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """The original's cv2.warpAffine: three points around the centre move by U(-jitter, jitter)."""
    h, w, _ = x.shape
    centre, size = np.array([w // 2, h // 2], float), min(h, w) // 3  # (x, y) as OpenCV
    source = np.array([centre + size, [centre[0] + size, centre[1] - size], centre - size])
    target = source + rng.uniform(-jitter, jitter, size=source.shape)
    # affine_transform pulls each output pixel from the input: map target points onto source ones.
    pull = np.linalg.solve(np.c_[target, np.ones(3)], source)  # rows: A^T, then b, in (x, y)
    matrix, offset = pull[:2].T[::-1, ::-1], pull[2][::-1]  # in (row, col)
    return _per_channel(ndimage.affine_transform, x, matrix, offset, order=1, mode="mirror")


def _canny(layer: UInt8[np.ndarray, "h w"], low: float = 50, high: float = 150) -> np.ndarray:
    """cv2.Canny(layer, 50, 150) less its non-maximum suppression (edges come out thicker)."""
    values = layer.astype(np.float64)
    magnitude = sum(np.abs(ndimage.sobel(values, axis, mode="nearest")) for axis in (0, 1))
    components, _ = ndimage.label(magnitude > low, structure=np.ones((3, 3)))
    return np.isin(components, components[magnitude > high]) & (magnitude > low)


def _equalize_histogram(values: UInt8[np.ndarray, "h w"]) -> UInt8[np.ndarray, "h w"]:
    """cv2.equalizeHist: the lowest value present goes to 0, the rest by cumulative counts."""
    counts = np.bincount(values.ravel(), minlength=256)
    lowest = np.flatnonzero(counts)[0]
    if counts[lowest] == values.size:
        return values
    lut = np.rint((np.cumsum(counts) - counts[lowest]) * 255 / (values.size - counts[lowest]))
    return np.clip(lut, 0, 255).astype(np.uint8)[values]


def _water_relief(layer: UInt8[np.ndarray, "h w"]) -> np.ndarray:
    """Spatter's water shading: distance to the drops' edges, equalised, embossed."""
    edges = _canny(layer)
    distance = np.full(layer.shape, 20.0)  # cv2's THRESH_TRUNC at 20
    if edges.any():
        distance = np.minimum(ndimage.distance_transform_edt(~edges), distance)
    distance = ndimage.uniform_filter(distance, 3, mode="mirror").astype(np.uint8)
    distance = _equalize_histogram(distance).astype(np.float64)
    relief = np.clip(np.rint(ndimage.correlate(distance, _EMBOSS, mode="mirror")), 0, 255)
    return np.rint(ndimage.uniform_filter(relief, 3, mode="mirror"))


# One function per corruption: (image, generator, *severity parameters) -> image.


def _gaussian_noise(image, rng, sigma):
    x = _unit(image)
    return _pixels(x + rng.normal(scale=sigma, size=x.shape))


def _shot_noise(image, rng, rate):
    return _pixels(rng.poisson(_unit(image) * rate) / rate)


def _impulse_noise(image, rng, amount):
    flipped, salted = rng.random(image.shape) < amount, rng.random(image.shape) < 0.5
    return _pixels(np.where(flipped, salted, _unit(image)))


def _speckle_noise(image, rng, sigma):
    x = _unit(image)
    return _pixels(x + x * rng.normal(scale=sigma, size=x.shape))


def _gaussian_blur(image, rng, sigma):
    return _pixels(_blur(_unit(image), sigma * _scale(image)))


def _defocus_blur(image, rng, radius, alias_sigma):
    radius, alias_sigma = radius * _scale(image), alias_sigma * _scale(image)
    half, taps = (8, 3) if radius <= 8 else (math.ceil(radius), 5)  # the original's disk()
    rows, cols = np.mgrid[-half : half + 1, -half : half + 1]
    disk = (rows**2 + cols**2 <= radius**2).astype(np.float64)
    smoothing = np.exp(-((np.arange(taps) - taps // 2) ** 2) / (2 * alias_sigma**2))
    disk, smoothing = disk / disk.sum(), smoothing / smoothing.sum()
    for axis in (0, 1):  # cv2.GaussianBlur antialiases the disk, reflect-101 borders
        disk = ndimage.correlate1d(disk, smoothing, axis, mode="mirror")
    return _pixels(ndimage.correlate(_unit(image), disk[..., None], mode="mirror"))


def _glass_blur(image, rng, sigma, delta, iterations):
    sigma, delta = sigma * _scale(image), max(1, round(delta * _scale(image)))
    pixels = _pixels(_blur(_unit(image), sigma))
    for _ in range(iterations):
        pixels = _shuffle_locally(pixels, delta, rng)
    return _pixels(_blur(_unit(pixels), sigma))


def _motion_blur(image, rng, radius, sigma):
    scale = _scale(image)
    return _motion_blur_pixels(image, radius * scale, sigma * scale, rng.uniform(-45, 45))


def _zoom_blur(image, rng, max_zoom):
    x = _unit(image).astype(np.float32)
    factors = np.arange(1, max_zoom, 0.01)
    return _pixels((x + sum(_clipped_zoom(x, factor) for factor in factors)) / (len(factors) + 1))


def _snow(image, rng, mean, std, zoom, threshold, radius, sigma, blend):
    x = _unit(image).astype(np.float32)
    flakes = _clipped_zoom(rng.normal(mean, std, size=(*x.shape[:2], 1)), zoom)
    flakes[flakes < threshold] = 0
    scale, angle = _scale(image), rng.uniform(-135, -45)
    flakes = _motion_blur_pixels(_pixels(flakes), radius * scale, sigma * scale, angle) / 255
    x = blend * x + (1 - blend) * np.maximum(x, _grey(x)[..., None] * 1.5 + 0.5)
    return _pixels(x + flakes + np.rot90(flakes, k=2))


def _fog(image, rng, amount, decay):
    h, w, _ = image.shape
    x = _unit(image)
    brightest = x.max()
    plasma = _plasma_fractal(2 ** math.ceil(math.log2(max(h, w))), decay, rng)[:h, :w, None]
    return _pixels((x + amount * plasma) * brightest / (brightest + amount))


def _brightness(image, rng, delta):
    if image.shape[-1] == 1:
        return _pixels(_unit(image) + delta)
    colors = _colors()
    hsv = colors.rgb_to_hsv(_unit(image))
    hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0, 1)
    return _pixels(colors.hsv_to_rgb(hsv))


def _saturate(image, rng, factor, shift):
    if image.shape[-1] == 1:
        return image.copy()
    colors = _colors()
    hsv = colors.rgb_to_hsv(_unit(image))
    hsv[..., 1] = np.clip(hsv[..., 1] * factor + shift, 0, 1)
    return _pixels(colors.hsv_to_rgb(hsv))


def _contrast(image, rng, factor):
    x = _unit(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _pixels((x - means) * factor + means)


def _elastic_transform(image, rng, alpha, sigma, jitter):
    h, w, _ = image.shape
    x = _random_affine(_unit(image).astype(np.float32), jitter * h, rng)
    dx, dy = (  # drawn in this order, as the original
        ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma * h, mode="reflect", truncate=3)
        * (alpha * h)
        for _ in range(2)
    )
    rows, cols = np.mgrid[:h, :w]
    coordinates = [rows + dy, cols + dx]
    return _pixels(_per_channel(ndimage.map_coordinates, x, coordinates, order=1, mode="reflect"))


def _pixelate(image, rng, factor):
    h, w, _ = image.shape
    box = _pil().BOX
    small = _to_pil(image).resize((int(w * factor), int(h * factor)), box)
    return _from_pil(small.resize((w, h), box), image.shape)


def _jpeg_compression(image, rng, quality):
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=quality)
    return _from_pil(_pil().open(buffer), image.shape)


def _spatter(image, rng, mean, std, sigma, threshold, intensity, mud):
    x = _unit(image).astype(np.float32)
    liquid = _blur(rng.normal(mean, std, size=(*x.shape[:2], 1)), sigma * _scale(image))[..., 0]
    liquid[liquid < threshold] = 0
    if mud:
        mask = _blur((liquid > threshold)[..., None].astype(np.float32), intensity * _scale(image))
        mask[mask < 0.8] = 0
        return _pixels(x * (1 - mask) + _colour(_MUD, x.shape[-1]) * mask)
    layer = _pixels(liquid)  # clipped here; the original's uint8 cast wraps the rare values above 1
    water = layer * _water_relief(layer)
    water = water / water.max() * intensity if water.max() > 0 else water
    return _pixels(x + water[..., None] * _colour(_WATER, x.shape[-1]))


_FUNCTIONS: dict[str, Callable[..., Pixels]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur, "snow": _snow, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression, "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur, "spatter": _spatter, "saturate": _saturate,
}  # fmt: skip


def _check(name: str, images: np.ndarray, severity: int, seed: int) -> None:
    if name not in _FUNCTIONS:
        missing = f" ({name} is left out: it {LEFT_OUT[name]})" if name in LEFT_OUT else ""
        known = ", ".join(CORRUPTIONS + EXTRAS)
        raise ValueError(f"unknown corruption {name!r}{missing}; known: {known}")
    if not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise ValueError(f"images must be an array (n, h, w, c), got shape {np.shape(images)}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got dtype {images.dtype}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (last axis), got {images.shape[-1]}")
    if min(images.shape[1:3]) < 8:
        h, w = images.shape[1:3]
        raise ValueError(f"images must be at least 8x8 pixels, got {h}x{w}")


def corrupt(
    name: str,
    images: UInt8[np.ndarray, "n h w c"],
    severity: int,
    *,
    seed: int,
    first_index: int = 0,
) -> UInt8[np.ndarray, "n h w c"]:
    """The corruption `name` (in CORRUPTIONS or EXTRAS) at `severity` 1..5 (docs/method.md §7).

    Image i draws from a generator seeded by (seed, name, severity, first_index + i):
    the same image at the same position with the same seed gets the same corruption,
    whatever else is in the batch.
    """
    _check(name, images, severity, seed)
    parameters = SEVERITY_PARAMETERS[name][severity - 1]
    parameters = parameters if isinstance(parameters, tuple) else (parameters,)
    name_key = zlib.crc32(name.encode())  # stable across runs, unlike hash()
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = np.random.default_rng([int(seed), name_key, severity, first_index + i])
        out[i] = _FUNCTIONS[name](image, rng, *parameters)
    return out
