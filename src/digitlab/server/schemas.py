"""What the API answers and accepts, for the OpenAPI schema (and /docs)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field

from .settings import MAX_BATCH


class ErrorResponse(BaseModel):
    error: str = Field(description="What went wrong, in a few words.")
    detail: Any = Field(None, description="Why, in more detail (a string, or a list of validation problems).")


class ExplanationResult(BaseModel):
    method: str = Field(description="How the heatmap was made: \"occlusion\" (the server's; see docs/api.md).")
    target: str = Field(description="The score explained: the log-odds of class `label` for occlusion.")
    label: int = Field(description="The class explained (the predicted one).")
    heatmap: list[list[float]] = Field(description="28x28 rows, in the model input's pixels (`model_input`), from -1 "
                                                   "to 1: positive pixels speak for `label`, negative ones against it.")


class DigitResult(BaseModel):
    label: Optional[int] = Field(None, description="The predicted class's number (for a digit model, the digit); "
                                                   "null when there is no digit.")
    name: Optional[str] = Field(None, description="The predicted class's name (the model's classes, GET /api/model: "
                                                  "\"7\" for a digit model); null when there is no digit.")
    confidence: float = Field(description="Probability of the predicted digit (0 when there is no digit).")
    probabilities: list[float] = Field(description="One probability per class, in the model's class order (ten for "
                                                   "digits 0-9; empty when there is no digit).")
    top3: list[tuple[int, float]] = Field(default_factory=list,
                                          description="The three most likely classes as [label, probability].")
    uncertain: bool = Field(description="True when the confidence is below the model's threshold, or there is no "
                                        "digit, or the ink is not a digit.")
    no_digit: bool = Field(description="True when the image holds no ink (an empty canvas), or too little for any "
                                       "digit.")
    not_digit: bool = Field(False, description="True when there is ink but it is not a digit (a letter, a shape, "
                                               "text...); `label` is then the digit it looks most like.")
    box: Optional[list[int]] = Field(None, description="Where the digit is in the input image: [x0, y0, x1, y1].")
    model_input: Optional[list[list[int]]] = Field(
        None, description="The 28x28 image the model saw (0-255, white ink on black); only with include_input=true.")
    explanation: Optional[ExplanationResult] = Field(
        None, description="Why: the pixels that drove the answer; only with explain=true, null when there is no digit.")
    source: Optional[str] = None


class NeighbourRow(BaseModel):
    label: int = Field(description="The class (one of the top 3).")
    name: str = Field(description="The class's name.")
    indices: list[int] = Field(description="Positions of the nearest training images in the training split.")
    similarity: list[float] = Field(description="Cosine similarity of each to the input in the model's embedding.")
    images: list[str] = Field(description="The training images: 28x28 grey PNGs, base64.")


class DigitResultWithNeighbours(DigitResult):
    neighbours: Optional[list[NeighbourRow]] = Field(None, description=(
        "Only with neighbours=true: for each top-3 class, its 5 nearest training images ([] when no digit)."))


class NumberResult(BaseModel):
    text: str = Field(description="The digits read left to right ('' when there are none).")
    digits: list[DigitResult]
    confidence: float = Field(description="The lowest per-digit confidence.")
    uncertain: bool
    no_digit: bool
    not_digit: bool = Field(False, description="True when some piece of ink is not a digit.")
    source: Optional[str] = None


class BatchItem(BaseModel):
    index: int
    filename: Optional[str] = None
    ok: bool
    result: Optional[DigitResult] = None
    error: Optional[str] = Field(None, description="Why this image has no result (the other images still do).")
    detail: Optional[str] = None


class BatchResult(BaseModel):
    count: int
    results: list[BatchItem]


class Probe(BaseModel):
    status: str  # "alive" (/healthz) or "ready" (/readyz)


class Health(BaseModel):
    status: str
    model_id: Optional[str] = None
    preset: Optional[str] = None
    test_accuracy: Optional[float] = None
    runtime: Optional[str] = None
    version: str
    uptime_s: float


class ModelSummary(BaseModel):
    """What the API tells about the model: never where it lives on the server's disk."""

    model_id: Optional[str] = Field(None, description="First 12 hex digits of the model file's SHA-256.")
    file: Optional[str] = Field(None, description="The model file's name (no directory).")
    preset: Optional[str] = None
    test_accuracy: Optional[float] = None
    runtime: Optional[str] = None
    threshold: Optional[float] = Field(None, description="Answers below this confidence are marked uncertain.")
    not_digit_above: Optional[float] = Field(
        None, description="Answers whose not-a-digit score (the normalised entropy of the probabilities, 0-1) is "
                          "above this are marked not a digit; null when the model has no such threshold.")
    temperature: Optional[float] = Field(
        None, description="The temperature the model's probabilities were calibrated with (part of the model); "
                          "null when it was not calibrated.")
    digitlab_version: Optional[str] = None
    classes: list[str] = Field(default_factory=list, description="What each output means, in order: the class names "
                                                                 "(\"0\" to \"9\" for a digit model).")


class ModelInfo(BaseModel):
    model: ModelSummary
    preprocessing: dict[str, Any] = Field(description="What the server accepts and how it turns it into model input.")
    limits: dict[str, int]
    corrections: dict[str, Any] = Field(default_factory=dict, description=(
        "Whether POST /api/corrections keeps corrections (`enabled`), and the folder's samples and limits."))
    version: str


class CorrectionResult(BaseModel):
    saved: bool
    id: str = Field(description="The sample's id (a UTC time and random hex), also its file name.")
    label: str = Field(description="The class it was saved under.")
    file: str = Field(description="The image's path inside the corrections folder: <label>/<id>.<ext>.")
    input_file: str = Field(description="The 28x28 model input's path inside the folder: .inputs/<label>/<id>.png.")
    count: int = Field(description="Samples in the folder now, this one included.")
    max_count: int
    model_input: list[list[int]] = Field(description="The 28x28 image saved as the model input (0-255, white on black).")


IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"],
                       "properties": {"file": {"type": "string", "format": "binary",
                                               "description": "An image file (PNG, JPEG, GIF, BMP, TIFF, WebP)."}}},
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}
BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["files"],
                       "properties": {"files": {"type": "array", "maxItems": MAX_BATCH,
                                                "items": {"type": "string", "format": "binary"}}}},
        },
    },
}
NOT_READY = {"model": ErrorResponse, "description": "The model is not loaded: the server is starting or stopping."}
ERRORS = {
    400: {"model": ErrorResponse, "description": "The Host header names another server (DNS rebinding)."},
    413: {"model": ErrorResponse, "description": "The request body is larger than the limit."},
    415: {"model": ErrorResponse, "description": "Not an image, a truncated image, or too many pixels."},
    422: {"model": ErrorResponse, "description": "The request is malformed (e.g. no `file` field)."},
    500: {"model": ErrorResponse, "description": "An unexpected error (the server log has the details)."},
}
CORRECTION_ERRORS = {
    **ERRORS,
    403: {"model": ErrorResponse, "description": "Corrections are off (the server was started without --corrections)."},
    409: {"model": ErrorResponse, "description": "The corrections folder is full (samples or bytes)."},
    422: {"model": ErrorResponse, "description": "No or an unknown label, no digit in the image, or a malformed request."},
    507: {"model": ErrorResponse, "description": "The server could not write to its disk."},
}
PREDICT_ERRORS = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "neighbours=true, but the model has no neighbour index."},
}
