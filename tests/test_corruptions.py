"""experiments/corruptions.py: CIFAR-10-C's common corruptions (docs/method.md §7)."""

import colorsys
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from experiments import corruptions
from experiments.corruptions import CORRUPTIONS, EXTRAS, NOISES, corrupt

ALL = CORRUPTIONS + EXTRAS
MID_GREY = 128


def _smooth_images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Natural-ish images: smoothed noise stretched over 0..255 (pure noise hides blurs)."""
    noise = np.random.default_rng(seed).uniform(size=(n, size, size, channels))
    smooth = ndimage.gaussian_filter(noise, (0, 2, 2, 0))
    low = smooth.min(axis=(1, 2, 3), keepdims=True)
    high = smooth.max(axis=(1, 2, 3), keepdims=True)
    return ((smooth - low) / (high - low) * 255).astype(np.uint8)


def _grey_images(n: int, size: int = 32, channels: int = 3) -> np.ndarray:
    return np.full((n, size, size, channels), MID_GREY, np.uint8)


def _truncate(x: np.ndarray) -> np.ndarray:
    """How the released files were written: np.uint8(x * 255), truncating."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def _assert_close_pixels(actual, expected, min_equal=0.99):
    """Equal up to a float rounding that moves a value across an integer before truncation."""
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert (difference == 0).mean() >= min_equal


# --- the API for every corruption --------------------------------------------------


def test_names():
    assert len(CORRUPTIONS) == 14 and "frost" not in ALL and "frost" in corruptions.LEFT_OUT
    assert set(NOISES) <= set(CORRUPTIONS)
    assert set(corruptions.SEVERITY_PARAMETERS) == set(ALL)
    assert all(len(values) == 5 for values in corruptions.SEVERITY_PARAMETERS.values())


@pytest.mark.parametrize("name", ALL)
@given(
    height=st.sampled_from([8, 13, 28, 32]),
    width=st.sampled_from([8, 13, 28, 32]),
    channels=st.sampled_from([1, 3]),
    severity=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_shape_and_dtype_are_kept(name, height, width, channels, severity, seed):
    images = np.random.default_rng(seed).integers(0, 256, (2, height, width, channels), np.uint8)
    out = corrupt(name, images, severity, seed=seed)
    assert out.shape == images.shape and out.dtype == np.uint8


# Left out: elastic_transform, whose random affine shrinks with severity (.08 to .03 of the
# size) while the elastic part grows, so severity 1 moves pixels furthest; saturate, whose
# severities 1-2 desaturate and 3-5 saturate rather than growing in strength.
MONOTONE = [name for name in ALL if name not in ("elastic_transform", "saturate")]


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_5_moves_images_further_than_severity_1(name):
    images = _smooth_images(4)

    def distance(severity):
        out = corrupt(name, images, severity, seed=0)
        return np.abs(out.astype(float) - images).mean()

    assert distance(5) > distance(1)


@pytest.mark.parametrize(
    "name",
    ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "pixelate",
     "elastic_transform"],
)  # fmt: skip
def test_blurs_and_warps_keep_a_constant_image(name):
    images = np.full((1, 32, 32, 3), 100, np.uint8)
    for severity in (1, 5):
        out = corrupt(name, images, severity, seed=0)
        assert np.abs(out.astype(int) - 100).max() <= 1


# --- randomness ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_images_and_batch_mates_do_not_matter(name):
    a, b, c = _smooth_images(3, size=16)
    first = corrupt(name, np.stack([a, b]), 5, seed=7)
    np.testing.assert_array_equal(first, corrupt(name, np.stack([a, b]), 5, seed=7))
    np.testing.assert_array_equal(first[0], corrupt(name, np.stack([a, c]), 5, seed=7)[0])
    # A data set corrupted in chunks is the data set corrupted at once.
    np.testing.assert_array_equal(first[1], corrupt(name, b[None], 5, seed=7, first_index=1)[0])


@pytest.mark.parametrize("name", [*NOISES, "speckle_noise"])
def test_different_seeds_give_different_noise(name):
    images = _smooth_images(2)
    assert not np.array_equal(corrupt(name, images, 3, seed=0), corrupt(name, images, 3, seed=1))


# --- against independent computations of the original (32x32) ---------------------


@pytest.mark.parametrize("severity", [1, 5])
def test_contrast_is_the_original_formula(severity):
    images = _smooth_images(3)
    x = images / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    expected = _truncate((x - means) * factor + means)
    np.testing.assert_array_equal(corrupt("contrast", images, severity, seed=0), expected)


def test_brightness_of_greyscale_adds_to_every_pixel():
    images = _smooth_images(2, channels=1)
    expected = _truncate(images / 255.0 + 0.3)
    np.testing.assert_array_equal(corrupt("brightness", images, 5, seed=0), expected)


@pytest.mark.parametrize(
    ("name", "severity", "change"),
    [
        ("brightness", 5, lambda h, s, v: (h, s, min(v + 0.3, 1.0))),
        ("saturate", 1, lambda h, s, v: (h, min(s * 0.3, 1.0), v)),
        ("saturate", 5, lambda h, s, v: (h, min(s * 2.5 + 0.2, 1.0), v)),
    ],
)
def test_hsv_corruptions_match_colorsys(name, severity, change):
    images = _smooth_images(2)
    x = images.reshape(-1, 3) / 255.0
    changed = [colorsys.hsv_to_rgb(*change(*colorsys.rgb_to_hsv(*pixel))) for pixel in x]
    expected = _truncate(np.array(changed)).reshape(images.shape)
    _assert_close_pixels(corrupt(name, images, severity, seed=0), expected)


def test_saturate_leaves_greyscale_alone():
    images = _smooth_images(2, channels=1)
    np.testing.assert_array_equal(corrupt("saturate", images, 5, seed=0), images)


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelate_is_a_pil_box_resize_down_and_up(channels):
    images = _smooth_images(2, channels=channels)
    for severity, factor in [(1, 0.95), (5, 0.65)]:
        expected = []
        for image in images:
            picture = Image.fromarray(image[..., 0] if channels == 1 else image)
            small = picture.resize((int(32 * factor), int(32 * factor)), Image.BOX)
            expected.append(np.asarray(small.resize((32, 32), Image.BOX)).reshape(image.shape))
        np.testing.assert_array_equal(corrupt("pixelate", images, severity, seed=0), expected)


def test_jpeg_compression_is_a_pil_round_trip():
    images = _smooth_images(2)
    for severity, quality in [(1, 80), (5, 40)]:
        expected = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            expected.append(np.asarray(Image.open(buffer)))
        out = corrupt("jpeg_compression", images, severity, seed=0)
        np.testing.assert_array_equal(out, expected)


def test_gaussian_blur_is_a_separable_gaussian_with_edge_pixels():
    images, sigma = _smooth_images(2), 1.0  # severity 5
    radius = int(4 * sigma + 0.5)  # scipy's (and skimage's) truncation at 4 sigma
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    padded = np.pad(images / 255.0, ((0, 0), (radius, radius), (radius, radius), (0, 0)), "edge")
    rows = sum(t * padded[:, i : i + 32] for i, t in enumerate(taps))
    blurred = sum(t * rows[:, :, i : i + 32] for i, t in enumerate(taps))
    _assert_close_pixels(corrupt("gaussian_blur", images, 5, seed=0), _truncate(blurred))


@pytest.mark.parametrize("delta", [1, 2])
def test_glass_blur_shuffle_is_the_original_loop(delta):
    image = _smooth_images(1)[0]
    ours = corruptions._shuffle_locally(image, delta, np.random.default_rng(5))
    steps = range(32 - delta, delta, -1)
    offsets = np.random.default_rng(5).integers(-delta, delta, size=(len(steps), len(steps), 2))
    x = image.copy()
    for i, h in enumerate(steps):
        for j, w in enumerate(steps):
            dx, dy = offsets[i, j]
            h_prime, w_prime = h + dy, w + dx
            # the original's line, verbatim: with numpy views it copies rather than swaps
            x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    np.testing.assert_array_equal(ours, x)


def test_motion_blur_is_a_one_sided_line_towards_the_angle():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    radius, sigma = 3, 1.5
    taps = np.exp(-(np.arange(7) ** 2) / (2 * sigma**2))
    padded = np.pad(image.astype(float), ((0, 0), (0, 7), (0, 0)), "edge")
    expected = sum(t * padded[:, i : i + 16] for i, t in enumerate(taps / taps.sum()))
    horizontal = corruptions._motion_blur_pixels(image, radius, sigma, 0.0)
    np.testing.assert_array_equal(horizontal, np.round(expected))
    # 90 degrees points down the rows: the transposed image blurred along its rows.
    vertical = corruptions._motion_blur_pixels(image.transpose(1, 0, 2), radius, sigma, 90.0)
    np.testing.assert_array_equal(vertical.transpose(1, 0, 2), horizontal)


# --- the noises' distributions on a mid-grey image ------------------------------------
# Truncation to uint8 shifts values down by half a level on average and adds a
# uniform rounding variance of 1/12 level^2; the tolerances are ~5 standard errors.


@pytest.mark.parametrize("severity", [1, 5])
def test_gaussian_noise_has_its_sigma(severity):
    images = _grey_images(8)
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    change = corrupt("gaussian_noise", images, severity, seed=0).astype(float) - MID_GREY
    expected_std = np.sqrt((255 * sigma) ** 2 + 1 / 12)
    assert abs(change.std() / expected_std - 1) < 5 * np.sqrt(0.5 / change.size)
    assert abs(change.mean() + 0.5) < 5 * expected_std / np.sqrt(change.size)


@pytest.mark.parametrize("severity", [1, 5])
def test_shot_noise_is_poisson(severity):
    images = _grey_images(8)
    rate = (500, 250, 100, 75, 50)[severity - 1]
    out = corrupt("shot_noise", images, severity, seed=0).astype(float)
    x = MID_GREY / 255
    expected_std = 255 * np.sqrt(x / rate)  # Poisson: variance = mean, divided by rate^2
    assert abs(out.mean() - (MID_GREY - 0.5)) < 5 * expected_std / np.sqrt(out.size)
    assert abs(out.var() / (expected_std**2 + 1 / 12) - 1) < 5 * np.sqrt(2 / out.size)


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_flips_a_fraction_amount_half_to_salt(severity):
    images = _grey_images(8)
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    out = corrupt("impulse_noise", images, severity, seed=0)
    salt, pepper = (out == 255).mean(), (out == 0).mean()
    assert abs(salt + pepper - amount) < 5 * np.sqrt(amount * (1 - amount) / out.size)
    assert np.all((out == 0) | (out == 255) | (out == images))
    flipped = (salt + pepper) * out.size
    assert abs(salt / (salt + pepper) - 0.5) < 5 * np.sqrt(0.25 / flipped)


def test_speckle_noise_scales_with_the_pixel():
    images, sigma = _grey_images(8), 0.2  # severity 5
    change = corrupt("speckle_noise", images, 5, seed=0).astype(float) - MID_GREY
    expected_std = np.sqrt((MID_GREY * sigma) ** 2 + 1 / 12)  # 255 x sigma, x = 128 / 255
    assert abs(change.std() / expected_std - 1) < 5 * np.sqrt(0.5 / change.size)


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "images", "severity", "message"),
    [
        ("contrast", np.zeros((2, 32, 32, 3), np.float32), 1, "uint8"),
        ("contrast", np.zeros((32, 32, 3), np.uint8), 1, r"\(n, h, w, c\)"),
        ("contrast", np.zeros((2, 32, 32, 4), np.uint8), 1, "1 or 3 channels"),
        ("contrast", np.zeros((2, 7, 32, 3), np.uint8), 1, "at least 8x8"),
        ("contrast", np.zeros((2, 32, 32, 3), np.uint8), 0, "severity"),
        ("contrast", np.zeros((2, 32, 32, 3), np.uint8), 6, "severity"),
        ("contrast", np.zeros((2, 32, 32, 3), np.uint8), 2.0, "severity"),
        ("blur", np.zeros((2, 32, 32, 3), np.uint8), 1, "unknown corruption 'blur'.*zoom_blur"),
        ("frost", np.zeros((2, 32, 32, 3), np.uint8), 1, "frost photographs"),
    ],
)
def test_bad_input_is_named(name, images, severity, message):
    with pytest.raises(ValueError, match=message):
        corrupt(name, images, severity, seed=0)


def test_negative_seed_is_named():
    with pytest.raises(ValueError, match="seed"):
        corrupt("contrast", _smooth_images(1), 1, seed=-1)
