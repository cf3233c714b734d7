"""The drawing page in a real browser: Playwright driving Debian's Chromium against `digitlab serve`.

Set DIGITLAB_SCREENSHOT=docs/screenshot.png to (re)write the README's screenshot.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the 'test' extra)")

from serving import ServerProcess, model_arg, user_png  # noqa: E402

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]

# Polylines in canvas fractions (0..1), one list per stroke.
STROKES = {
    "1": [[(0.52, 0.16), (0.50, 0.50), (0.48, 0.86)]],
    "7": [[(0.26, 0.20), (0.50, 0.19), (0.74, 0.20), (0.60, 0.45), (0.48, 0.68), (0.40, 0.86)]],
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corrections(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corrections")


@pytest.fixture(scope="module")
def server(tmp_path_factory, corrections):
    srv = ServerProcess(model_arg(tmp_path_factory), extra=["--corrections", str(corrections)])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1000, "height": 820})
    pg = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.url + "/")
    pg.wait_for_selector('#bars li[data-digit="9"]')
    yield pg
    context.close()
    outside = [u for u in requests if not (u.startswith(server.url + "/") or u.startswith(("blob:", "data:")))]
    assert not outside, f"the page reached outside its server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def draw(page, strokes):
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=6)
        page.mouse.up()


def wait_done(page):
    page.wait_for_selector('#result[data-state="done"]', timeout=15_000)


def shown(page) -> tuple[str, dict[int, float]]:
    digit = page.locator("#digit").inner_text().strip()
    probs = {int(li.get_attribute("data-digit")): float(li.get_attribute("data-probability"))
             for li in page.locator("#bars li").all()}
    return digit, probs


@pytest.mark.parametrize("digit", ["1", "7"])
def test_draw_a_digit(page, digit):
    draw(page, STROKES[digit])
    wait_done(page)
    label, probs = shown(page)
    assert label == digit, f"drew a {digit}, the page says {label} ({probs})"
    assert max(probs, key=probs.get) == int(digit)
    assert sum(probs.values()) == pytest.approx(1.0, abs=0.01)
    top = page.locator(f'#bars li[data-digit="{digit}"] [role="meter"]')
    assert float(top.get_attribute("aria-valuenow")) > 50
    # The 28x28 preview shows what the model saw: some bright ink on black.
    lit = page.evaluate("""() => {
        const d = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n; }""")
    assert 20 < lit < 500

    if digit == "7" and os.environ.get("DIGITLAB_SCREENSHOT"):
        target = Path(os.environ["DIGITLAB_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), type="png")

    # Undo removes the stroke: back to the empty state; Clear works from the keyboard.
    page.get_by_role("button", name="Undo").click()
    page.wait_for_selector('#result[data-state="idle"]')
    draw(page, STROKES[digit])
    wait_done(page)
    page.get_by_role("button", name="Clear").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector('#result[data-state="idle"]')
    assert page.locator("#digit").inner_text().strip() == "?"


def test_upload_a_file(page, server, mnist, tmp_path):
    i = int(np.flatnonzero(mnist.y_test == 3)[0])
    png = user_png(mnist.x_test[i], size=140)
    path = tmp_path / "three.png"
    path.write_bytes(png)
    req = urllib.request.Request(server.url + "/api/predict", data=png, method="POST",
                                 headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        api = json.load(resp)
    page.set_input_files("#file", str(path))
    wait_done(page)
    label, probs = shown(page)
    assert label == str(api["label"]) == "3"  # the page and the API agree, and both are right
    assert max(probs, key=probs.get) == 3
    assert probs[3] == pytest.approx(api["probabilities"][3], abs=1e-6)


def test_number_mode_and_phone_width(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector('#bars li[data-digit="9"]')
        no_scroll = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        assert no_scroll, "the page scrolls sideways at phone width"
        page.get_by_label("A number").check()
        page.wait_for_selector('#result[data-mode="number"]')
        assert page.locator("#number-view").get_attribute("hidden") is None
        box = page.locator("#canvas").bounding_box()
        assert box["width"] <= 390
        # "1" then "7", side by side (the canvas is 5:2 in number mode).
        draw(page, [[(0.22, 0.15), (0.22, 0.5), (0.21, 0.85)]])
        draw(page, [[(0.45, 0.2), (0.56, 0.19), (0.67, 0.2), (0.6, 0.5), (0.53, 0.85)]])
        wait_done(page)
        assert page.locator("#number").inner_text().strip() == "17"
        assert page.locator("#number-digits li").count() == 2
    finally:
        context.close()


@pytest.mark.parametrize("path, rendered", [
    ("/docs", ".swagger-ui .opblock-summary-path"),  # one row per operation
    ("/redoc", "[data-section-id^='tag/predict'], [data-section-id^='operation/']"),
])
def test_api_docs_render_offline(browser, server, path, rendered):
    """/docs (Swagger UI) and /redoc (ReDoc) render with the network cut off: every request that
    is not to this server is aborted, and there must be none."""
    context = browser.new_context(viewport={"width": 1000, "height": 820})
    outside: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", only_this_server)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + path)
        page.wait_for_selector(rendered, timeout=20_000)
        page.wait_for_load_state("networkidle")
        assert page.locator(rendered).count() >= 1
        assert "/api/predict" in page.content()
        assert not outside, f"{path} reached outside its server: {outside}"
        assert not errors, f"JavaScript errors on {path}: {errors}"
    finally:
        context.close()


def test_wrong_its_a_saves_a_correction(page, corrections):
    """The "Wrong? It's a _" control: the drawing just answered is saved under the chosen class."""
    assert page.locator("#correct").is_hidden()  # nothing to correct yet
    draw(page, STROKES["1"])
    wait_done(page)
    page.wait_for_selector("#correct:not([hidden])")
    page.select_option("#correct-label", "7")
    page.get_by_role("button", name="Save correction").click()
    page.wait_for_selector('#correct[data-state="saved"]', timeout=15_000)
    assert "Saved as 7" in page.locator("#correct-status").inner_text()
    (original,) = (corrections / "7").iterdir()
    (model_input,) = (corrections / ".inputs" / "7").iterdir()
    assert original.suffix == ".png" and model_input.stem == original.stem
    from PIL import Image

    with Image.open(model_input) as img:
        assert img.size == (28, 28) and 20 < int((np.asarray(img) > 128).sum()) < 500  # the drawn stroke
    page.get_by_role("button", name="Clear").click()
    page.wait_for_selector('#result[data-state="idle"]')
    assert page.locator("#correct").is_hidden()


def test_nearest_training_images_under_the_bars(page):
    """For each of the top 3, a row of 5 training images of that class (the shipped model has an index)."""
    draw(page, STROKES["7"])
    wait_done(page)
    page.wait_for_selector("#neighbours:not([hidden])")
    rows = page.locator("#neighbour-rows li")
    assert rows.count() == 3
    assert rows.nth(0).get_attribute("data-label") == "7"
    for i in range(3):
        images = rows.nth(i).locator("img")
        assert images.count() == 5
        assert images.nth(0).get_attribute("src").startswith("data:image/png;base64,")
    page.get_by_role("button", name="Clear").click()
    page.wait_for_selector('#result[data-state="idle"]')
    assert page.locator("#neighbours").is_hidden()


def test_show_why_overlays_the_heatmap_on_the_ink(page):
    """The "Show why" toggle asks for explain=true and lays the heatmap over the drawing's ink and the preview."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    draw(page, STROKES["7"])
    wait_done(page)
    assert page.locator("#explain-overlay").is_hidden()
    page.locator("#explain-toggle").check()
    page.wait_for_selector('#explain-overlay[data-method="occlusion"]', timeout=15_000)
    wait_done(page)
    assert any("explain=true" in u for u in asked)
    assert "occlusion" in page.locator("#explain-note").inner_text()
    cover = page.evaluate("""() => {
        const c = document.getElementById('canvas'), o = document.getElementById('explain-overlay');
        const ink = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const heat = o.getContext('2d').getImageData(0, 0, o.width, o.height).data;
        let inkN = 0, inkLit = 0, bgN = 0, bgLit = 0;
        for (let i = 0; i < ink.length; i += 4) {
            const dark = ink[i] < 100, lit = heat[i + 3] > 0;
            if (dark) { inkN++; if (lit) inkLit++; } else { bgN++; if (lit) bgLit++; }
        }
        const p = document.getElementById('preview-explain').getContext('2d').getImageData(0, 0, 28, 28).data;
        let previewLit = 0; for (let i = 3; i < p.length; i += 4) if (p[i] > 0) previewLit++;
        return {inkShare: inkLit / inkN, bgShare: bgLit / bgN, previewLit};
    }""")
    assert cover["inkShare"] > 0.6, cover  # the heat lies on the ink...
    assert cover["bgShare"] < cover["inkShare"] / 2, cover  # ...not all over the canvas
    assert cover["previewLit"] > 20, cover
    # Off again: the overlays go, and the next answer comes without a heatmap.
    page.locator("#explain-toggle").uncheck()
    assert page.locator("#explain-overlay").is_hidden() and page.locator("#preview-explain").is_hidden()
