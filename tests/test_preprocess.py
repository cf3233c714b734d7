"""The image pipeline: any image -> MNIST format (no model needed here)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digitlab.errors import DigitlabError, ImageError
from digitlab.preprocess import (
    detect_polarity,
    find_digit,
    is_mnist_like,
    label_components,
    load_image,
    normalize_digit,
    segment_digits,
    to_grayscale_ink,
    to_model_input,
)


def test_to_model_input_shapes_and_scale():
    x = np.full((2, 28, 28), 255, np.uint8)
    out = to_model_input(x)
    assert out.shape == (2, 28, 28, 1) and out.dtype == np.float32 and out.max() == 1.0
    assert to_model_input(x[0]).shape == (1, 28, 28, 1)
    with pytest.raises(DigitlabError):
        to_model_input(np.zeros((2, 27, 28)))


def test_to_pixels_undoes_to_model_input():
    from digitlab.preprocess import to_pixels

    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    back = to_pixels(to_model_input(x))
    assert back.dtype == np.uint8 and back.shape == (3, 28, 28)
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(to_pixels(to_model_input(x, scale=0.5), scale=0.5), x)


# --------------------------------------------------------------------------- helpers


def user_style(digit: np.ndarray, size: int = 120) -> Image.Image:
    """Black ink on white paper, scaled up, off-centre in a wider canvas."""
    big = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size * 2, size + 40), 255)
    canvas.paste(big, (size // 3, 25))
    return canvas


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    w = a.astype(np.float64)
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    return float((w * ys).sum() / w.sum()), float((w * xs).sum() / w.sum())


def ink_box(a: np.ndarray, level: int = 0) -> tuple[int, int]:
    ys, xs = np.nonzero(a > level)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


# --------------------------------------------------------------------------- MNIST format


def test_output_is_centred_by_mass_and_fits_20x20(mnist):
    for digit in mnist.x_test[:40]:
        out = normalize_digit(user_style(digit))
        assert out is not None and out.shape == (28, 28) and out.dtype == np.uint8
        cy, cx = centre_of_mass(out)
        assert abs(cy - 14) <= 1.0 and abs(cx - 14) <= 1.0, (cy, cx)
        h, w = ink_box(out)
        assert h <= 20 and w <= 20 and max(h, w) >= 19  # fitted: the long side fills the 20 px box
        assert out.max() == 255


def test_mnist_images_pass_through_unchanged(mnist):
    for digit in mnist.x_test[:200]:
        assert is_mnist_like(digit)
        out = normalize_digit(digit)
        assert out is not None and out.tobytes() == digit.tobytes()
        assert normalize_digit(Image.fromarray(digit)).tobytes() == digit.tobytes()  # as a PIL "L" image too
        buf = io.BytesIO()
        Image.fromarray(digit).save(buf, "PNG")
        assert normalize_digit(load_image(buf.getvalue())).tobytes() == digit.tobytes()  # and as a PNG file


def test_inverted_28x28_is_not_passed_through(mnist):
    digit = mnist.x_test[0]
    assert not is_mnist_like(255 - digit)
    out = normalize_digit(255 - digit)
    assert out is not None and np.corrcoef(out.ravel(), digit.ravel())[0, 1] > 0.9


def test_polarity_detection_both_ways(mnist):
    digit = mnist.x_test[3]
    white_on_black = np.asarray(Image.fromarray(digit).resize((84, 84)), np.float32) / 255
    black_on_white = 1 - white_on_black
    assert detect_polarity(white_on_black) == "light-on-dark"
    assert detect_polarity(black_on_white) == "dark-on-light"
    grey_paper = 0.55 - 0.4 * white_on_black  # dark ink on mid-grey paper
    assert detect_polarity(grey_paper) == "dark-on-light"
    a = normalize_digit(Image.fromarray(np.round(white_on_black * 255).astype(np.uint8)))
    b = normalize_digit(Image.fromarray(np.round(black_on_white * 255).astype(np.uint8)))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same digit either way
    ink = to_grayscale_ink(Image.fromarray(np.round(black_on_white * 255).astype(np.uint8)))
    assert ink.dtype == np.float32 and ink[0, 0] == 0.0 and ink.max() == 1.0


@pytest.mark.parametrize("image", [
    np.zeros((50, 50), np.uint8),
    np.full((64, 80), 255, np.uint8),
    np.full((40, 40, 3), (20, 120, 200), np.uint8),
    np.zeros((30, 30, 4), np.uint8),  # fully transparent
], ids=["black", "white", "uniform-colour", "transparent"])
def test_empty_image_has_no_digit(image):
    assert normalize_digit(image) is None
    assert segment_digits(image) == []


def test_noise_only_has_no_digit():
    rng = np.random.default_rng(0)
    for sigma in (5, 15, 30):
        noise = np.clip(rng.normal(200, sigma, (150, 150)), 0, 255).astype(np.uint8)
        assert normalize_digit(noise) is None, sigma
    light = np.clip(np.linspace(120, 240, 200)[None, :] + rng.normal(0, 6, (160, 200)), 0, 255).astype(np.uint8)
    assert normalize_digit(light) is None  # uneven light on blank paper is not ink


def _rgba_from_alpha(digit: np.ndarray) -> Image.Image:
    arr = np.zeros((*digit.shape, 4), np.uint8)
    arr[..., 3] = digit
    return Image.fromarray(arr)


def test_every_pillow_mode_gives_the_same_digit(mnist):
    digit = mnist.x_test[7]
    big = Image.fromarray(255 - digit).resize((56, 56), Image.Resampling.BICUBIC)  # black on white
    ref = normalize_digit(big)
    rgb = big.convert("RGB")
    p_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    p_transparent.info["transparency"] = p_transparent.getpixel((0, 0))  # the paper colour is transparent
    variants = {
        "RGB": rgb, "RGBA": rgb.convert("RGBA"), "LA": big.convert("LA"), "CMYK": rgb.convert("CMYK"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "P+transparency": p_transparent,
        "I;16": Image.fromarray(np.asarray(big).astype(np.uint16) * 257),
        "I": big.convert("I"), "F": Image.fromarray(np.asarray(big, np.float32) / 255),
        "YCbCr": rgb.convert("YCbCr"),
        "alpha-only": _rgba_from_alpha(np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BICUBIC))),
        "ndarray-rgb": np.asarray(rgb), "ndarray-float": np.asarray(big, np.float32) / 255,
    }
    for name, img in variants.items():
        out = normalize_digit(img)
        assert out is not None, name
        diff = np.abs(out.astype(int) - ref.astype(int))
        assert diff.mean() < 6 and np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.95, name
    one_bit = normalize_digit(big.convert("1", dither=Image.Dither.NONE))
    assert one_bit is not None and np.corrcoef(one_bit.ravel(), ref.ravel())[0, 1] > 0.9


def test_transparent_background_with_coloured_strokes(mnist):
    digit = np.asarray(Image.fromarray(mnist.x_test[1]).resize((84, 84), Image.Resampling.BICUBIC))
    arr = np.zeros((84, 84, 4), np.uint8)
    arr[..., :3] = (30, 60, 200)  # blue pen; its RGB is the same everywhere, the shape is in alpha
    arr[..., 3] = digit
    arr[digit == 0, :3] = (255, 0, 255)  # garbage colour under fully transparent pixels must not matter
    out = normalize_digit(Image.fromarray(arr))
    ref = normalize_digit(Image.fromarray(255 - digit))
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.97


def test_exif_orientation_is_applied(mnist):
    digit = mnist.x_test[0]
    upright = Image.fromarray(255 - digit).resize((60, 90))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and the tag that says "rotate 90 degrees clockwise to view"
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    loaded = load_image(buf.getvalue())
    assert loaded.size == upright.size
    a, b = normalize_digit(loaded), normalize_digit(upright)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_first_frame_of_an_animated_gif(mnist):
    frames = [Image.fromarray(255 - mnist.x_test[i]).resize((56, 56)).convert("P") for i in (0, 1)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    first = normalize_digit(buf.getvalue())
    assert np.abs(first.astype(int) - normalize_digit(frames[0].convert("L")).astype(int)).mean() < 3


def test_uneven_light_and_small_digit_in_a_big_image(mnist):
    digit = Image.fromarray(255 - mnist.x_test[2]).resize((48, 48), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (1600, 1200), 255)
    canvas.paste(digit, (1000, 300))
    light = np.linspace(0.45, 1.0, 1600, dtype=np.float32)[None, :]
    photo = Image.fromarray((np.asarray(canvas, np.float32) * light).astype(np.uint8))
    box, out = find_digit(photo)
    assert 997 <= box[0] < box[2] <= 1051 and 297 <= box[1] < box[3] <= 351  # inside the pasted 48x48 square
    ref = normalize_digit(digit)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


def test_thin_pencil_strokes_are_thickened():
    from PIL import ImageDraw

    img = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(img).line([(120, 60), (300, 60), (170, 340)], fill=0, width=1)  # a 1-px "7"
    out = normalize_digit(img)
    assert out is not None and (out > 128).sum() >= 25  # MNIST-like stroke area, not a faint hairline


# --------------------------------------------------------------------------- components and segmentation


def test_label_components_counts_8_connected_pieces():
    m = np.zeros((10, 12), bool)
    m[1:4, 1:3] = True  # a block
    m[4, 3] = True  # touches it diagonally: same component
    m[6:9, 6:11] = True
    m[0, 11] = True
    labels, n = label_components(m)
    assert n == 3
    assert labels[1, 1] == labels[4, 3] != labels[7, 7]
    assert (labels > 0).sum() == m.sum()
    # a U shape joins only at the bottom row
    u = np.zeros((6, 7), bool)
    u[0:5, 1] = u[0:5, 5] = True
    u[4, 1:6] = True
    assert label_components(u)[1] == 1


def _row(mnist, indices, gap=8, pad=10):
    digits = [255 - mnist.x_test[i] for i in indices]
    width = pad * 2 + 28 * len(digits) + gap * (len(digits) - 1)
    canvas = np.full((28 + 2 * pad, width), 255, np.uint8)
    for k, d in enumerate(digits):
        x = pad + k * (28 + gap)
        canvas[pad:pad + 28, x:x + 28] = np.minimum(canvas[pad:pad + 28, x:x + 28], d)
    return Image.fromarray(canvas)


def test_segment_digits_left_to_right(mnist):
    segs = segment_digits(_row(mnist, [1, 2, 3, 4], gap=6).resize((4 * 36 * 3, 48 * 3)))
    assert len(segs) == 4
    xs = [box[0] for box, _ in segs]
    assert xs == sorted(xs)
    for box, digit in segs:
        assert digit.shape == (28, 28) and box[2] > box[0] and box[3] > box[1]


def test_broken_digit_pieces_are_merged(mnist):
    fives = np.nonzero(mnist.y_test == 5)[0]
    five = mnist.x_test[fives[0]].copy()
    rows = np.nonzero(five.max(axis=1) > 0)[0]
    five[rows[0] + 4: rows[0] + 6] = 0  # cut the top bar off the body
    img = Image.fromarray(255 - five).resize((112, 112), Image.Resampling.NEAREST)
    assert label_components(np.asarray(img) < 128)[1] >= 2  # really broken
    assert len(segment_digits(img)) == 1


def test_single_digits_are_not_split_into_numbers(mnist):
    """Detached strokes (a 5's top bar set off to the side) stay one digit.

    Number mode switches on automatically when several digits are found, so
    a false split turns a 5 into "51". Measured: 1 split in 3,000 test digits.
    """
    from PIL import ImageOps

    splits = [i for i in range(1000)
              if len(segment_digits(ImageOps.invert(Image.fromarray(mnist.x_test[i])).resize((100, 100)))) != 1]
    assert len(splits) <= 1, splits


def test_specks_are_ignored(mnist):
    img = np.asarray(user_style(mnist.x_test[0])).copy()
    img[5:7, 5:7] = 0  # a speck of dust
    img[-8:-6, -30:-28] = 0
    assert len(segment_digits(img)) == 1
    box, _ = find_digit(img)
    assert box[0] > 10 and box[1] > 10


# --------------------------------------------------------------------------- bad files


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _iend() -> bytes:
    return struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def test_bad_files_raise_clear_image_errors(tmp_path, mnist):
    good = io.BytesIO()
    Image.fromarray(255 - mnist.x_test[0]).resize((200, 200)).save(good, "PNG")
    cases = {
        "zero.png": (b"", "empty file"),
        "truncated.png": (good.getvalue()[: len(good.getvalue()) // 2], "truncated"),
        "text.png": (b"this is not an image\n", "not an image"),
        "bomb.png": (_png_header(100_000, 100_000) + _iend(), "too large"),
        "big.png": (_png_header(8000, 6000) + _iend(), "too large"),  # 48 MP, under Pillow's own limit
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for source in (path, str(path), data):
            with pytest.raises(ImageError) as info:
                normalize_digit(load_image(source))
            msg = str(info.value)
            assert expected in msg, (name, msg)
            if not isinstance(source, bytes):
                assert msg.startswith(f"{path}: ")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((3, 3, 7), np.uint8))
    with pytest.raises(ImageError, match="too large"):
        load_image(good.getvalue(), max_pixels=100)
    with pytest.raises(ImageError, match="too large"):
        load_image(good.getvalue(), max_bytes=100)
