"""No digit, not a digit, uncertain: decided once in Predictor, and carried to every output
(to_dict, the CLI's table/CSV/JSON, the REST API). The model here is a stand-in runner whose
answers are known, so each rule is tested by itself; test_trust_training.py tests a real one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from digitlab.config.settings import Config
from digitlab.predict.predictor import DigitPrediction, NumberPrediction, Predictor, _Prepared
from digitlab.predict.present import CSV_HEADER, Printer, csv_row, record, table_row

UNIFORM = np.full(10, 0.1, np.float32)


class Runner:
    """Answers `probs` for every input (the same row each time)."""

    name = "fake"
    path = None

    def __init__(self, probs, **config):
        self.probs = np.asarray(probs, np.float32)
        self.config = Config(**config)
        self.seen = 0

    def __call__(self, x):
        self.seen += len(x)
        return np.tile(self.probs, (len(x), 1))


def sure(digit, p=0.999):
    row = np.full(10, (1 - p) / 9, np.float32)
    row[digit] = p
    return row


def _prepared(*inputs, number=False):
    boxes = tuple((i, 0, i + 1, 1) for i in range(len(inputs)))
    return _Prepared("x.png", number, False, boxes, tuple(inputs))


@pytest.fixture(scope="module")
def digit(mnist):
    return mnist.x_test[0]  # a 7


def test_near_empty_input_is_no_digit_whatever_produced_it(digit):
    """A model input with less ink than any MNIST digit is "no digit" even when handed to Predictor
    directly (not through preprocessing), and even though the model is sure of a class."""
    p = Predictor(Runner(sure(1)))
    speck = np.zeros((28, 28), np.uint8)
    speck[14, 10:16] = 255  # 6 pixels of ink
    for inp in (np.zeros((28, 28), np.uint8), speck):
        r = p.finish([_prepared(inp)])[0]
        assert isinstance(r, DigitPrediction)
        assert r.no_digit and r.uncertain and r.label is None and r.confidence == 0.0 and r.probabilities == ()
        assert r.box == (0, 0, 1, 1) and r.model_input is inp  # --show-input can still show what was seen
    assert p.predict(np.zeros((28, 28), np.uint8)).no_digit  # a blank image never reaches a class
    # number mode: the near-empty piece is no part of the number
    n = p.finish([_prepared(digit, speck, digit, number=True)])[0]
    assert isinstance(n, NumberPrediction) and n.text == "11" and len(n.digits) == 2 and not n.no_digit
    only = p.finish([_prepared(speck, number=True)])[0]
    assert only.no_digit and only.text == ""


def test_not_a_digit_and_uncertain_come_from_the_models_own_thresholds(digit):
    spread = Predictor(Runner(UNIFORM, uncertain_below=0.5, not_digit_above=0.9))
    r = spread.finish([_prepared(digit)])[0]
    assert r.not_digit and r.uncertain and not r.no_digit and r.label == 0  # the closest digit is still told
    d = r.to_dict()
    assert d["not_digit"] is True and d["no_digit"] is False
    # two digits 50/50: uncertain, but an ambiguous digit is no "not a digit" (entropy 0.30 < 0.9)
    tie = np.zeros(10, np.float32)
    tie[[4, 9]] = 0.5
    r = Predictor(Runner(tie, uncertain_below=0.6, not_digit_above=0.9)).finish([_prepared(digit)])[0]
    assert r.uncertain and not r.not_digit
    confident = Predictor(Runner(sure(7), uncertain_below=0.9, not_digit_above=0.9))
    r = confident.finish([_prepared(digit)])[0]
    assert not (r.uncertain or r.not_digit or r.no_digit) and r.label == 7
    # the model's own uncertain threshold applies unless one is given; a model without one uses 0.6
    assert confident.threshold == 0.9 and Predictor(Runner(sure(7))).threshold == 0.6
    assert Predictor(Runner(sure(7, 0.95), uncertain_below=0.99)).finish([_prepared(digit)])[0].uncertain
    assert not Predictor(Runner(sure(7, 0.95), uncertain_below=0.99), threshold=0.9).finish([_prepared(digit)])[0].uncertain
    # a model without a not-a-digit threshold makes no such decision
    assert not Predictor(Runner(UNIFORM)).finish([_prepared(digit)])[0].not_digit
    # a number with one piece that is not a digit is flagged as a whole
    n = spread.finish([_prepared(digit, digit, number=True)])[0]
    assert n.not_digit and n.uncertain and n.to_dict()["not_digit"] is True
    assert spread.info["not_digit_above"] == 0.9 and spread.info["threshold"] == 0.5


def test_the_cli_outputs_show_not_a_digit(digit):
    from digitlab.predict.predictor import Outcome

    r = Predictor(Runner(UNIFORM, not_digit_above=0.9)).finish([_prepared(digit)])[0]
    out = Outcome("x.png", r)
    assert table_row("x.png", r)[-1] == "not a digit"
    row = dict(zip(CSV_HEADER, csv_row(out)))
    assert row["not_digit"] == 1 and row["uncertain"] == 1 and row["no_digit"] == 0 and row["prediction"] == "0"  # the class name
    assert record(out)["not_digit"] is True
    assert len(csv_row(out)) == len(CSV_HEADER) == len(csv_row(Outcome("y.png", None, "broken")))


def test_the_rest_api_shows_not_a_digit(digit):
    from fastapi.testclient import TestClient

    from digitlab.server import create_app

    predictor = Predictor(Runner(UNIFORM, uncertain_below=0.7, not_digit_above=0.9, temperature=1.5))
    png = _png(Image.fromarray(255 - np.kron(digit, np.ones((4, 4), np.uint8))))
    with TestClient(create_app(lambda: predictor), base_url="http://127.0.0.1:8000") as c:
        one = c.post("/api/predict", content=png, headers={"content-type": "image/png"}).json()
        number = c.post("/api/predict/number", content=png, headers={"content-type": "image/png"}).json()
        batch = c.post("/api/predict/batch", files=[("files", ("a.png", png, "image/png"))]).json()
        model = c.get("/api/model").json()
        schema = c.get("/openapi.json").json()["components"]["schemas"]
    assert one["not_digit"] is True and one["uncertain"] is True and one["label"] == 0
    assert number["not_digit"] is True and number["digits"][0]["not_digit"] is True
    assert batch["results"][0]["result"]["not_digit"] is True
    assert model["model"]["not_digit_above"] == 0.9 and model["model"]["threshold"] == 0.7
    assert model["model"]["temperature"] == 1.5 and model["preprocessing"]["not_digit_above"] == 0.9
    assert "not_digit" in schema["DigitResult"]["properties"] and "not_digit" in schema["NumberResult"]["properties"]


def test_the_cli_json_shows_not_a_digit(tiny_run, tmp_path, digit, capsys):
    """`digitlab predict --json` with a real model whose config says everything is not a digit."""
    from digitlab.cli.commands import main

    model = tmp_path / "m"
    model.mkdir()
    shutil.copy2(tiny_run / "model.keras", model / "model.keras")
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["temperature"] is not None  # the tiny run was calibrated after training
    (model / "config.json").write_text(json.dumps({**config, "not_digit_above": 0.0}))
    Image.fromarray(digit).save(tmp_path / "seven.png")
    Image.new("L", (40, 40), 0).save(tmp_path / "blank.png")
    with pytest.raises(SystemExit) as info:
        main(["predict", "--json", "--model", str(model), str(tmp_path / "seven.png"), str(tmp_path / "blank.png")])
    assert info.value.code == 0
    records = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)}
    assert records["seven.png"]["not_digit"] is True and records["seven.png"]["uncertain"] is True
    assert records["blank.png"]["no_digit"] is True and records["blank.png"]["not_digit"] is False


def test_printer_table_lists_the_flag(digit, capsys):
    from digitlab.predict.predictor import Outcome

    r = Predictor(Runner(UNIFORM, not_digit_above=0.9)).finish([_prepared(digit)])[0]
    with Printer("table") as printer:
        printer.add(Outcome("letter.png", r))
    assert "not a digit" in capsys.readouterr().out


def _png(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
