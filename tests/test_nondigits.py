"""The generated non-digit sets (digitlab.data.nondigits): deterministic, fair, and two honest splits."""

from __future__ import annotations

import hashlib
import io
import os
import string
from collections import Counter

import numpy as np
import pytest

from digitlab.data import nondigits as nd
from digitlab.preprocess import load_image, to_grayscale_ink

N = 240  # 40 per category: about a second per split


@pytest.fixture(scope="module")
def sets():
    return {split: nd.generate(split, N, seed=0) for split in nd.SPLITS}


def _digest(item: nd.NonDigit) -> str:
    img = item.image
    return hashlib.sha256(img.mode.encode() + repr(img.size).encode() + img.tobytes()).hexdigest()


def _png(item: nd.NonDigit) -> bytes:
    buf = io.BytesIO()
    item.image.save(buf, "PNG")
    return buf.getvalue()


def test_deterministic_and_seeded(sets):
    again = nd.generate("heldout", 60, seed=0)
    assert [_digest(a) for a in again] == [_digest(b) for b in sets["heldout"][:60]]  # also: a prefix
    assert [(a.kind, a.detail, a.style, a.font) for a in again] == \
        [(b.kind, b.detail, b.style, b.font) for b in sets["heldout"][:60]]
    other = nd.generate("heldout", 60, seed=1)
    assert sum(_digest(a) == _digest(b) for a, b in zip(again, other)) == 0


def test_splits_disjoint_in_fonts_words_and_pixels(sets):
    from fontTools.ttLib import TTFont

    def families(files):  # the first word of each font's family name, e.g. "DejaVu", "cmr"
        names = (TTFont(os.path.join(nd.font_dir(), f), lazy=True)["name"].getDebugName(1) for f in files)
        return {name.split()[0].rstrip("0123456789") for name in names}

    assert not set(nd.FONTS["calibration"]) & set(nd.FONTS["heldout"])
    fams = {split: families(nd.FONTS[split]) for split in nd.SPLITS}
    assert fams == {"calibration": {"DejaVu"}, "heldout": {"STIXGeneral", "cmr", "cmb", "cmti", "cmmi", "cmss", "cmtt"}}
    for split, items in sets.items():
        used = {it.font for it in items if it.font}
        assert used <= set(nd.FONTS[split]) and len(used) >= 6, (split, used)
    words = {split: {w.lower() for it in items if it.kind == "text" for w in it.detail.split()}
             for split, items in sets.items()}
    assert words["calibration"] and words["heldout"] and not words["calibration"] & words["heldout"]
    pix = {split: {_digest(it) for it in items} for split, items in sets.items()}
    assert len(pix["calibration"]) == N and len(pix["heldout"]) == N  # no duplicates within a split either
    assert not pix["calibration"] & pix["heldout"]
    # the parameter ranges differ too: e.g. crosses and star points
    shapes = {split: {" ".join(it.detail.split()[:2]) if it.detail.startswith("cross") else it.detail.split()[0]
                      for it in items if it.kind == "shapes"} for split, items in sets.items()}
    assert "cross +" in shapes["calibration"] and "cross x" in shapes["heldout"]
    assert not {"cross x", "star4", "star7", "star8"} & shapes["calibration"]
    assert not {"cross +", "star5", "star6"} & shapes["heldout"]


def test_every_category_and_style_present(sets):
    for items in sets.values():
        assert Counter(it.kind for it in items) == {k: N // len(nd.CATEGORIES) for k in nd.CATEGORIES}
        assert set(it.style for it in items) == set(nd.STYLES)
        assert {it.image.mode for it in items} == {"L", "RGB", "RGBA"}
        sides = [max(it.image.size) for it in items]
        assert min(sides) <= 40 and max(sides) >= 250  # small exports to photo crops


def test_every_image_decodes_and_has_ink(sets):
    for items in sets.values():
        for it in items:
            img = load_image(_png(it), name=it.detail)
            ink = to_grayscale_ink(img)
            assert ink.shape == it.image.size[::-1]
            # real ink, not a blank page: the extremes stand well apart (a filled shape larger
            # than half the image is taken as the background, so the median is not the paper)
            lo, hi = np.percentile(ink, [0.5, 99.5])
            assert hi - lo > 0.1, (it.kind, it.detail, it.style, lo, hi)


def test_no_digit_lookalikes(sets):
    assert not set(nd.LETTERS) & set(nd.LOOKALIKES) and not set(nd.SYMBOLS) & set(nd.LOOKALIKES)
    assert set(nd.LETTERS) | {c for c in nd.LOOKALIKES if c in string.ascii_letters} == set(string.ascii_letters)
    for c in "OoQDIlijSsZzBbGgq$§?()/|!":  # the reasoned list, spot-checked
        assert c in nd.LOOKALIKES
    for items in sets.values():
        for it in items:
            if it.kind in ("letters", "symbols"):
                assert len(it.detail) == 1 and it.detail not in nd.LOOKALIKES, it.detail
            if it.kind == "text":
                for word in it.detail.split():
                    assert 2 * sum(c in nd.LOOKALIKES for c in word) <= len(word), word
            assert not any(w in it.detail for w in ("circle", "ellipse", "ring", "vertical"))


def test_glyphs_are_real_glyphs(sets):
    """A glyph a font lacks would come out as its .notdef box: every drawn glyph is in the font."""
    from fontTools.ttLib import TTFont

    cmaps = {}
    for items in sets.values():
        for it in items:
            if it.kind in ("letters", "symbols", "text"):
                if it.font not in cmaps:
                    cmaps[it.font] = set(TTFont(os.path.join(nd.font_dir(), it.font), lazy=True).getBestCmap())
                assert all(ord(c) in cmaps[it.font] for c in it.detail if c != " "), (it.font, it.detail)
                if it.kind == "symbols":
                    assert not it.font.startswith("cm")  # Computer Modern keeps TeX's layout there


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        nd.generate("test", 3)
    with pytest.raises(ValueError):
        nd.generate("heldout", -1)
    assert nd.generate("heldout", 0) == []
