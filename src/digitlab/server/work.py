"""From image bytes to answers, off the event loop and within bounded memory.

Every image is decoded, preprocessed (`Predictor.prepare`: the only path to the
model's input) and dropped on its own, in a worker thread; only its 28x28 inputs
are kept for the model (`Predictor.finish`). A pixel budget shared by all
requests admits at most `max_pixels` pixels into decoding at once: one image at
the pixel cap has it to itself, while many canvas-sized images go in parallel.
So the memory for images stays about one full-size image's worth, whatever the
batch size or the number of concurrent requests. After a large image, freed heap
memory is handed back to the system (glibc keeps it otherwise, per thread arena).
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import DigitlabError, ModelError, StorageError
from . import errors

# Images of at least this many pixels give their freed memory back at once (malloc_trim,
# a few ms); smaller ones (the page's 280x280 canvas) would pay that for a few MB.
TRIM_ABOVE = 1_000_000
log = logging.getLogger("uvicorn.error")  # where uvicorn logs the app's errors


class PixelBudget:
    """A weighted semaphore: at most `total` pixels held at once, across threads."""

    def __init__(self, total: int):
        self.total = int(total)
        self._free = self.total
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[int]:
        n = min(max(int(pixels), 1), self.total)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield n
        finally:
            with self._cond:
                self._free += n
                self._cond.notify_all()


def declared_pixels(data: bytes) -> int:
    """The pixel count in an image's header (no pixel is decoded); 0 when it has none."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
        return w * h
    except Exception:  # noqa: BLE001 - not an image: load_image says what is wrong
        return 0


def _heap_trimmer() -> Callable[[], None]:
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim  # glibc; elsewhere there is nothing to do
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


class ImageWork:
    """The loaded Predictor and the pixel budget its work runs under (in Starlette's thread pool)."""

    def __init__(self, predictor: Any, *, max_pixels: int):
        self.predictor = predictor
        self.max_pixels = max_pixels
        self.budget = PixelBudget(max_pixels)
        self._trim = _heap_trimmer()
        self._explainer: Any = None  # made on the first explain=true (predict.explaining.Explainer)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn, *args)

    def _prepare(self, data: bytes, name: str, mode: str) -> Any:
        """Decode and preprocess one image (in a worker thread); the image is dropped before returning."""
        from ..preprocess import load_image

        with self.budget.hold(declared_pixels(data)) as pixels:
            try:
                img = load_image(data, name=name, max_pixels=self.max_pixels, max_bytes=max(len(data), 1))
                prepared = self.predictor.prepare(img, mode=mode, source=name)
                del img
                return prepared
            finally:
                if pixels >= TRIM_ABOVE:
                    self._trim()

    async def predict(self, data: bytes, name: str, mode: str, include_input: bool, neighbours: bool = False,
                      explain: bool = False) -> bytes:
        """One image -> its answer as JSON bytes (ApiError 415/422 for a bad image); with `neighbours`,
        for each top-3 class its nearest training images (ApiError 409 when the model has no index);
        with `explain` (a digit), its heatmap too."""

        def work() -> bytes:
            result = self.predictor.finish([self._prepare(data, name, mode)])[0]
            answer = result.to_dict(include_input=include_input)
            if neighbours:
                try:
                    found = self.predictor.neighbours(result) if hasattr(result, "top3") else []
                except ModelError:
                    raise errors.no_neighbours() from None
                answer["neighbours"] = [n.to_dict() for n in found]
            if explain:
                answer["explanation"] = self.explanation(result)
            return json_bytes(answer)

        try:
            return await self._run(work)
        except DigitlabError as exc:
            raise errors.for_exception(exc) from None

    def explanation(self, result: Any) -> dict[str, Any] | None:
        """The heatmap of one digit's answer, as JSON (None for no digit). Occlusion on the server's
        own runner: the most faithful method measured, ~20 ms, and no TensorFlow on an ONNX server."""
        from ..predict.explaining import Explainer

        if self._explainer is None:
            self._explainer = Explainer(self.predictor)
        explained = self._explainer.explain([result])[0]
        return None if explained is None else explained.to_dict()

    async def correct(self, data: bytes, name: str, label: str, folder: Any) -> dict[str, Any]:
        """Save one correction (`corrections.CorrectionsFolder`): the image, and the 28x28 input the
        prediction path makes of it, under `label`. ApiError 415 (bad image), 422 (no digit), 409 (full)."""
        from ..models.ood import near_empty
        from ..preprocess import load_image
        from .corrections import CorrectionError, FolderFull

        def work() -> dict[str, Any]:
            with self.budget.hold(declared_pixels(data)) as pixels:
                try:
                    img = load_image(data, name=name, max_pixels=self.max_pixels, max_bytes=max(len(data), 1))
                    prepared = self.predictor.prepare(img, mode="digit", source=name)
                    if not prepared.inputs or near_empty(np.stack(prepared.inputs))[0]:
                        raise errors.bad_correction("no digit in the image (too little ink); nothing was saved")
                    saved = folder.save(data, prepared.inputs[0], label, image=img)
                    del img
                finally:
                    if pixels >= TRIM_ABOVE:
                        self._trim()
            return {"saved": True, "id": saved.id, "label": saved.label, "file": saved.file,
                    "input_file": saved.input_file, "count": saved.count, "max_count": folder.max_count,
                    "model_input": np.asarray(prepared.inputs[0]).astype(int).tolist()}

        try:
            return await self._run(work)
        except FolderFull as exc:
            raise errors.corrections_full(str(exc)) from None
        except StorageError as exc:  # the server's disk, not the client's request
            log.error("cannot save a correction: %s", exc)
            raise errors.storage_failed() from None
        except CorrectionError as exc:
            raise errors.bad_correction(str(exc)) from None
        except DigitlabError as exc:
            raise errors.for_exception(exc) from None

    async def prepare(self, data: bytes, name: str, mode: str) -> Any:
        """One image of a batch -> its prepared inputs (raises what `Predictor.prepare` raises)."""
        return await self._run(self._prepare, data, name, mode)

    async def finish(self, prepared: Sequence[Any]) -> list[Any]:
        """The answers for prepared images with one model call; if that call fails, image by
        image, so that a failure is the failing image's (an ApiError in its place)."""

        def work() -> list[Any]:
            try:
                return list(self.predictor.finish(prepared))
            except Exception:  # noqa: BLE001 - find the image(s) it failed on
                return [self._finish_one(p) for p in prepared]

        return await self._run(work)

    def _finish_one(self, prepared: Any) -> Any:
        try:
            return self.predictor.finish([prepared])[0]
        except Exception as exc:  # noqa: BLE001 - this image's error, not the batch's
            return failure(exc, getattr(prepared, "source", None))


def failure(exc: BaseException, name: Any) -> errors.ApiError:
    """The ApiError for one image that failed; unexpected errors also go to the log."""
    answer = errors.for_exception(exc)
    if answer.status >= 500:
        log.error("unexpected error on image %r", name, exc_info=exc)
    return answer


def json_bytes(obj: Any) -> bytes:
    """Compact JSON (plain Python types from `to_dict`; anything else via _clean); NaN is an error."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except TypeError:
        text = json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _clean(obj: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)
