"""The REST API: /api/predict, /api/predict/number, /api/predict/batch, /api/corrections, /api/health,
/api/model; and the probes for load balancers and Kubernetes: /healthz (liveness) and /readyz (readiness)."""

from __future__ import annotations

import time
from pathlib import PurePath
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from .. import __version__
from . import errors
from .schemas import (
    BATCH_BODY,
    CORRECTION_ERRORS,
    ERRORS,
    IMAGE_BODY,
    NOT_READY,
    PREDICT_ERRORS,
    BatchResult,
    CorrectionResult,
    DigitResultWithNeighbours,
    Health,
    ModelInfo,
    NumberResult,
    Probe,
)
from .settings import MAX_BATCH
from .work import ImageWork, failure, json_bytes

ACCEPTS = ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/tiff", "image/webp"]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_form(request: Request, max_files: int) -> Any:
    try:
        return await request.form(max_files=max_files, max_fields=max_files + 16)
    except (errors.ApiError, errors.BodyTooLarge, ClientDisconnect):
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart from the client
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise errors.invalid_multipart(str(detail)) from None


async def _one_image(request: Request) -> tuple[bytes, str]:
    """The image bytes and a name for messages: multipart field `file`, or the raw body."""
    media = _media_type(request)
    if media == "multipart/form-data":
        form = await _read_form(request, max_files=1)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise errors.missing_file()
            return await upload.read(), upload.filename or "file"
        finally:
            await form.close()
    if media.startswith("image/") or media in ("application/octet-stream", ""):
        data = await request.body()
        if not data:
            raise errors.empty_body()
        return data, "body"
    raise errors.unsupported_media(media)


def _work(request: Request) -> ImageWork:
    work = request.app.state.work
    if work is None:  # only when the lifespan did not run (e.g. a TestClient without `with`)
        raise errors.not_loaded()
    return work


def model_summary(predictor: Any) -> dict[str, Any]:
    """The public facts about the model, picked one by one (a whitelist: whatever else
    Predictor.info holds, now or later, is not published). The file is given by name only,
    whichever field it comes from, so no directory of the server's disk is ever shown."""
    info = dict(getattr(predictor, "info", None) or {})
    path = getattr(predictor, "model_path", None) or info.get("model_file") or info.get("model_path")
    return {"model_id": info.get("model_id"), "file": PurePath(str(path)).name if path else None,
            "preset": info.get("preset"), "test_accuracy": info.get("test_accuracy"), "runtime": info.get("runtime"),
            "threshold": info.get("threshold"), "not_digit_above": info.get("not_digit_above"),
            "temperature": info.get("temperature"), "digitlab_version": info.get("digitlab_version"),
            "classes": list(info.get("classes") or [])}


def add_api_routes(app: FastAPI) -> None:
    include_q = Query(False, description="Also return the 28x28 image the model saw (`model_input`).")

    neighbours_q = Query(False, description=(
        "Also return, for each of the top-3 classes, the 5 training images nearest to the input in the model's "
        "embedding (`neighbours`: label, name, training indices, cosine similarity, base64 PNGs); 409 when the "
        "model has no neighbour index (`digitlab neighbours MODEL`)."))

    explain_q = Query(False, description=(
        "Also return why (`explanation`): a 28x28 heatmap of the pixels that drove the answer, by occlusion "
        "on the server's own runtime (about 20 ms more)."))

    async def predict_one(request: Request, mode: str, include_input: bool, neighbours: bool = False,
                          explain: bool = False) -> Response:
        """The body of /api/predict and /api/predict/number. The JSON is written once here (a ready
        Response skips FastAPI's re-validation; `response_model` still documents it)."""
        data, name = await _one_image(request)
        body = await _work(request).predict(data, name, mode, include_input, neighbours, explain)
        return Response(body, media_type="application/json")

    @app.post("/api/predict", response_model=DigitResultWithNeighbours, responses=PREDICT_ERRORS, openapi_extra={"requestBody": IMAGE_BODY},
              summary="Predict one digit", tags=["predict"])
    async def predict(request: Request, include_input: bool = include_q, neighbours: bool = neighbours_q,
                      explain: bool = explain_q) -> Any:
        """One digit from an image (multipart `file` or the raw body). An empty image gives `no_digit: true`,
        ink that is not a digit (a letter, a shape) `not_digit: true`."""
        return await predict_one(request, "digit", include_input, neighbours, explain)

    @app.post("/api/predict/number", response_model=NumberResult, responses=ERRORS,
              openapi_extra={"requestBody": IMAGE_BODY}, summary="Read a whole number", tags=["predict"])
    async def predict_number(request: Request, include_input: bool = include_q) -> Any:
        """Several digits in one image, read left to right."""
        return await predict_one(request, "number", include_input)

    @app.post("/api/predict/batch", response_model=BatchResult, responses=ERRORS,
              openapi_extra={"requestBody": BATCH_BODY}, summary="Predict a batch of images", tags=["predict"])
    async def predict_batch(request: Request, include_input: bool = include_q) -> Any:
        """Several images (multipart field `files`, up to 64): one result or one error per image.
        Each image is decoded and preprocessed on its own and dropped before the next one."""
        media = _media_type(request)
        if media != "multipart/form-data":
            raise errors.unsupported_media(media, batch=True)
        work = _work(request)
        form = await _read_form(request, max_files=MAX_BATCH)
        items: list[dict[str, Any]] = []
        prepared: list[tuple[dict[str, Any], Any]] = []
        try:
            uploads = [u for u in form.getlist("files") if not isinstance(u, str)]
            if not uploads:
                raise errors.missing_file(batch=True)
            for i, upload in enumerate(uploads):
                name = upload.filename or f"files[{i}]"
                item: dict[str, Any] = {"index": i, "filename": name, "ok": False, "result": None}
                items.append(item)
                try:
                    prepared.append((item, await work.prepare(await upload.read(), name, "digit")))
                except Exception as exc:  # noqa: BLE001 - any failure is this image's, not the batch's
                    answer = failure(exc, name)
                    item.update(error=answer.error, detail=str(answer.detail))
        finally:
            await form.close()
        results = await work.finish([p for _, p in prepared])
        for (item, _), result in zip(prepared, results, strict=True):
            if isinstance(result, errors.ApiError):
                item.update(error=result.error, detail=str(result.detail))
            else:
                item.update(ok=True, result=result.to_dict(include_input=include_input))
        return Response(json_bytes({"count": len(items), "results": items}), media_type="application/json")

    @app.post("/api/corrections", response_model=CorrectionResult, status_code=201, responses=CORRECTION_ERRORS,
              openapi_extra={"requestBody": IMAGE_BODY}, summary="Save a corrected sample", tags=["corrections"])
    async def correct(request: Request, label: str = Query(..., min_length=1, max_length=64, description=(
            "The right class for the image: one of the model's class names (GET /api/model)."))) -> Any:
        """"Wrong? It's a 7": save the image (multipart `file` or the raw body) and the 28x28 input the
        model sees of it under `label`, in the server's corrections folder (`digitlab serve --corrections
        DIR`), to fine-tune on later (`digitlab train --data DIR --init pretrained`). The file name is
        the server's own; nothing of the request but the image and the label is kept."""
        folder = getattr(request.app.state, "corrections", None)
        if folder is None:
            raise errors.corrections_off()
        work = _work(request)
        from .corrections import CorrectionError

        try:
            folder.check_label(label)  # before reading an image for nothing
        except CorrectionError as exc:
            raise errors.bad_correction(str(exc)) from None
        data, name = await _one_image(request)
        body = await work.correct(data, name, label, folder)
        return Response(json_bytes(body), status_code=201, media_type="application/json")

    @app.get("/api/health", response_model=Health, summary="Is the server up, and with which model?", tags=["info"])
    async def health(request: Request) -> Any:
        info = _work(request).predictor.info
        return {"status": "ok", "model_id": info.get("model_id"), "preset": info.get("preset"),
                "test_accuracy": info.get("test_accuracy"), "runtime": info.get("runtime"),
                "version": __version__, "uptime_s": round(time.monotonic() - request.app.state.started, 3)}

    @app.get("/healthz", response_model=Probe, summary="Liveness: the process is up (never looks at the model)",
             tags=["probes"])
    async def healthz() -> Any:
        return {"status": "alive"}

    @app.get("/readyz", response_model=Probe, responses={503: NOT_READY}, tags=["probes"],
             summary="Readiness: the model is loaded and predictions are answered (503 while starting or stopping)")
    async def readyz(request: Request) -> Any:
        _work(request)  # 503 `model not loaded` before the lifespan loaded it and once it has unloaded it
        return {"status": "ready"}

    @app.get("/api/model", response_model=ModelInfo, summary="The model and its preprocessing contract", tags=["info"])
    async def model_info(request: Request) -> Any:
        summary = model_summary(_work(request).predictor)
        settings = request.app.state.settings
        return {
            "model": summary,
            "preprocessing": {
                "accepts": ACCEPTS,
                "polarity": "either: dark ink on light paper or light ink on dark; detected from the border",
                "alpha": "transparent pixels are background",
                "steps": ["decode (EXIF-rotated)", "grayscale ink map", "background and noise removed",
                          "digit cropped and fitted into 20x20 (aspect kept)",
                          "centred by centre of mass in 28x28", "scaled to [0, 1] (x/255)"],
                "model_input": "float32 (N, 28, 28, 1), white ink on black, as MNIST",
                "uncertain_below": summary["threshold"],
                "not_digit_above": summary["not_digit_above"],
            },
            "limits": {"max_bytes": settings.max_bytes, "max_pixels": settings.max_pixels, "max_batch": MAX_BATCH},
            "corrections": _corrections_info(request),
            "version": __version__,
        }


def _corrections_info(request: Request) -> dict[str, Any]:
    """Whether POST /api/corrections saves anything, and the folder's limits (never its path)."""
    folder = getattr(request.app.state, "corrections", None)
    if folder is None:
        return {"enabled": False}
    count, size = folder.usage()
    return {"enabled": True, "count": count, "max_count": folder.max_count, "bytes": size,
            "max_bytes": folder.max_bytes}
