"""The only path from pixels to model input.

One module per concern:

    model_input   the contract every model is trained and served with (`to_model_input`, and back: `to_pixels`)
    loading       bytes / paths / arrays / PIL images -> a checked, decoded image
    colour        any Pillow mode -> grey levels and an ink map (alpha, polarity)
    bands         bands of inverted polarity (light slabs beside a dark field) flipped back
    ndimage       numpy stand-ins for the scipy.ndimage operations used below
    ink           background and noise removed, strokes masked (`clean_ink`)
    lines         lines that are no digit strokes: form lines (ruled and squared paper, boxes,
                  comb fields) removed; a thin line across an MNIST-format image left out of its checks
    segment       pieces of ink -> digits (merge broken digits, split touching ones)
    cuts          candidate cuts through touching digits (the model chooses: `predict.reading`)
    fit           one digit -> MNIST's 20x20-in-28x28 format
    digits        `find_digit`, `segment_digits`, `number_groups`, `normalize_digit`

Only numpy and Pillow are used, so prediction never has to import anything
heavier than the inference runtime.
"""

from .colour import MIN_WORK_SIDE, WORK_SIDE, detect_polarity, to_grayscale, to_grayscale_ink
from .digits import Box, Candidates, NumberGroups, find_digit, normalize_digit, number_groups, segment_digits
from .fit import COM_TARGET, FIELD, FIT_BOX, THIN_ABOVE, fit_to_mnist, is_mnist_like
from .ink import InkMap, clean_ink
from .loading import IMAGE_EXTENSIONS, MAX_BYTES, MAX_PIXELS, ImageSource, load_image
from .model_input import MNIST_SCALE, to_model_input, to_pixels
from .ndimage import label_components

__all__ = [
    "Box", "COM_TARGET", "Candidates", "FIELD", "NumberGroups", "FIT_BOX", "IMAGE_EXTENSIONS", "ImageSource", "InkMap", "MAX_BYTES",
    "MAX_PIXELS", "MIN_WORK_SIDE", "MNIST_SCALE", "THIN_ABOVE", "WORK_SIDE", "clean_ink", "detect_polarity", "find_digit",
    "fit_to_mnist", "is_mnist_like", "label_components", "load_image", "normalize_digit",
    "number_groups", "segment_digits",
    "to_grayscale", "to_grayscale_ink", "to_model_input", "to_pixels",
]
