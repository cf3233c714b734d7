"""Loading edge cases: float images with NaN/inf, corrupt EXIF, decompression bombs."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from digitlab.errors import ImageError
from digitlab.preprocess import MAX_PIXELS, find_digit, load_image, normalize_digit


def _float_tiff(path, bad):
    a = np.full((60, 60), 0.9, np.float32)
    a[10:50, 27:33] = 0.1  # a "1"
    a[3, 4] = bad
    Image.fromarray(a).save(path)  # Pillow writes mode F as a 32-bit float TIFF
    with Image.open(path) as im:
        assert im.mode == "F"
    return a


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_float_tiff_with_nan_or_inf_is_an_image_error(tmp_path, bad):
    path = tmp_path / "float.tif"
    a = _float_tiff(path, bad)
    for source in (path, str(path), path.read_bytes()):
        with pytest.raises(ImageError, match="NaN or infinite"):
            load_image(source)
    with pytest.raises(ImageError, match=f"^{path}: "):
        load_image(path)
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(a)  # the same pixels as an array
    with Image.open(path) as im:  # and a PIL image handed straight to the digit logic
        with pytest.raises(ImageError, match="NaN or infinite"):
            find_digit(im)


def test_finite_float_tiff_still_reads(tmp_path):
    path = tmp_path / "float.tif"
    _float_tiff(path, 0.9)
    out = normalize_digit(load_image(path))
    assert out is not None and out.max() == 255


def _exif_with_oversized_tag() -> bytes:
    """An EXIF block (big-endian TIFF header) whose one tag claims 1000 bytes that are not there."""
    return b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHII", 0x010E, 2, 1000, 100) + b"\x00" * 4


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_corrupt_exif_loads_without_a_warning(tmp_path, fmt, mnist, capsys):
    img = Image.fromarray(255 - mnist.x_test[0]).resize((84, 84))
    buf = io.BytesIO()
    exif = _exif_with_oversized_tag()
    img.save(buf, fmt, exif=exif if fmt == "PNG" else b"Exif\x00\x00" + exif)
    with warnings.catch_warnings():  # the check itself: Pillow does warn on this file
        warnings.simplefilter("error")
        with pytest.raises(UserWarning):
            Image.open(io.BytesIO(buf.getvalue())).getexif()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loaded = load_image(buf.getvalue())
        assert normalize_digit(loaded) is not None
    assert [str(w.message) for w in seen] == []
    assert capsys.readouterr().err == ""


def test_corrupt_exif_does_not_reach_the_cli_stderr(tmp_path, mnist):
    """In a real process: pytest collects warnings itself, so only a subprocess shows what a user sees."""
    import subprocess
    import sys

    path = tmp_path / "seven.png"
    Image.fromarray(255 - mnist.x_test[0]).resize((84, 84)).save(path, exif=_exif_with_oversized_tag())
    proc = subprocess.run([sys.executable, "-c", "from digitlab.cli import main; main()", "predict", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "seven.png" in proc.stdout, proc.stderr
    assert proc.stderr == "", proc.stderr


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


@pytest.mark.parametrize("side", [100_000, 10_000], ids=["pillow-error", "pillow-warning"])
def test_decompression_bomb_quotes_digitlab_limit(side):
    pillow_limit = Image.MAX_IMAGE_PIXELS
    assert side * side > pillow_limit  # Pillow objects to both: an error above 2x its limit, a warning above it
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            load_image(_png_header(side, side), name="bomb.png")
    msg = str(info.value)
    assert msg.startswith("bomb.png: image too large (") and f"limit {MAX_PIXELS:,})" in msg, msg
    assert f"{side * side:,} pixels" in msg
    assert str(pillow_limit) not in msg and f"{pillow_limit:,}" not in msg
    assert [str(w.message) for w in seen] == []
    with pytest.raises(ImageError, match=r"limit 1,000\)"):
        load_image(_png_header(side, side), max_pixels=1000)


def test_pil_image_without_rotation_is_not_copied(mnist):
    img = Image.fromarray(mnist.x_test[0])
    assert load_image(img) is img  # loading a decoded image costs no second copy of its pixels
