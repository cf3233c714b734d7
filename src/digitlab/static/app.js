// digitlab drawing page: plain JavaScript, no libraries, no network access beyond this server.
"use strict";

(function () {
  const DEBOUNCE_MS = 150;
  const SIZES = { digit: [280, 280], number: [700, 280] };

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const pad = $("pad");
  const result = $("result");
  const digitOut = $("digit");
  const statusOut = $("status");
  const bars = $("bars");
  const preview = $("preview");
  const pctx = preview.getContext("2d");
  const brush = $("brush");
  const brushValue = $("brush-value");
  const fileInput = $("file");
  const numberView = $("number-view");
  const numberOut = $("number");
  const numberDigits = $("number-digits");
  const correctForm = $("correct");
  const correctLabel = $("correct-label");
  const correctStatus = $("correct-status");

  let mode = "digit";
  let strokes = [];          // [{size, points: [[x, y], ...]}]
  let current = null;        // the stroke being drawn
  let background = null;     // an uploaded image drawn under the strokes
  let timer = null;
  let seq = 0;               // request sequence: only the newest answer is shown
  let inFlight = false;
  let again = false;         // something changed while a request was in flight
  let waiting = false;       // a debounced request is scheduled
  let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];  // the model's (GET /api/model)
  let correctionsOn = false; // the server keeps corrections (digitlab serve --corrections DIR)
  let lastSent = null;       // {body, type} of the image behind the answer shown, for a correction

  // ------------------------------------------------------------------ bars

  let barRows = [];

  // One bar per class (data-digit: its number, the index of its probability), and the
  // correction control's choices: built from the model's class names.
  function buildClasses(names) {
    classes = names.slice();
    barRows = names.map((name, d) => {
      const li = document.createElement("li");
      li.dataset.digit = String(d);
      li.dataset.probability = "0";
      const label = document.createElement("span");
      label.className = "name";
      label.setAttribute("aria-hidden", "true");
      label.textContent = name;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.setAttribute("role", "meter");
      fill.setAttribute("aria-label", `Probability of ${name}`);
      fill.setAttribute("aria-valuemin", "0");
      fill.setAttribute("aria-valuemax", "100");
      fill.setAttribute("aria-valuenow", "0");
      fill.setAttribute("aria-valuetext", "0%");
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = "0%";
      li.append(label, track, value);
      return li;
    });
    bars.replaceChildren(...barRows);
    correctLabel.replaceChildren(correctLabel.options[0]);
    names.forEach((name) => correctLabel.add(new Option(name, name)));
  }
  buildClasses(classes);

  function nameOf(r) { return r.name !== undefined && r.name !== null ? r.name : String(r.label); }

  function setBars(probs) {
    const k = barRows.length;
    let top = -1;
    if (probs && probs.length === k) top = probs.indexOf(Math.max(...probs));
    barRows.forEach((li, d) => {
      const p = probs && probs.length === k ? probs[d] : 0;
      const pct = Math.round(p * 1000) / 10;
      li.dataset.probability = String(p);
      li.classList.toggle("top", d === top);
      const fill = li.querySelector(".fill");
      fill.style.width = `${Math.max(0, Math.min(100, p * 100))}%`;
      fill.setAttribute("aria-valuenow", String(pct));
      fill.setAttribute("aria-valuetext", `${pct}%`);
      li.querySelector(".value").textContent = `${pct.toFixed(1)}%`;
    });
  }

  // ------------------------------------------------------------------ drawing

  function resetCanvas() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  function drawBackground() {
    if (!background) return;
    const s = Math.min(canvas.width / background.width, canvas.height / background.height);
    const w = background.width * s, h = background.height * s;
    ctx.drawImage(background, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }

  function drawStroke(st) {
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = st.size;
    const pts = st.points;
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], st.size / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }

  function redraw() {
    resetCanvas();
    drawBackground();
    strokes.forEach(drawStroke);
    if (current) drawStroke(current);
  }

  function isEmpty() {
    return strokes.length === 0 && !current && !background;
  }

  function toCanvas(ev) {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * (canvas.width / r.width), (ev.clientY - r.top) * (canvas.height / r.height)];
  }

  function scaledBrush() {
    // The brush size is in canvas pixels of the 280-pixel-high canvas in both modes.
    return Number(brush.value) * (canvas.height / 280);
  }

  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== undefined && ev.button > 0) return;
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    current = { size: scaledBrush(), points: [toCanvas(ev)], pointerId: ev.pointerId };
    redraw();
    schedule();
  });

  canvas.addEventListener("pointermove", (ev) => {
    if (!current || ev.pointerId !== current.pointerId) return;
    ev.preventDefault();
    const events = typeof ev.getCoalescedEvents === "function" ? ev.getCoalescedEvents() : [];
    (events.length ? events : [ev]).forEach((e) => current.points.push(toCanvas(e)));
    // Incremental: draw only the new segment(s).
    const pts = current.points;
    const n = events.length || 1;
    ctx.strokeStyle = "#000";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = current.size;
    ctx.beginPath();
    const start = Math.max(0, pts.length - n - 1);
    ctx.moveTo(pts[start][0], pts[start][1]);
    for (let i = start + 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
    schedule();
  });

  function endStroke(ev) {
    if (!current || (ev && ev.pointerId !== current.pointerId)) return;
    strokes.push({ size: current.size, points: current.points });
    current = null;
    schedule();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);

  function undo() {
    if (strokes.length) strokes.pop();
    else background = null;
    redraw();
    schedule();
  }

  function clearAll() {
    strokes = [];
    current = null;
    background = null;
    redraw();
    schedule();
  }

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearAll);
  brush.addEventListener("input", () => { brushValue.textContent = brush.value; });
  document.addEventListener("keydown", (ev) => {
    const tag = (ev.target && ev.target.tagName) || "";
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") { ev.preventDefault(); undo(); }
    else if (ev.key === "Escape" && tag !== "INPUT") { clearAll(); }
  });

  document.querySelectorAll('input[name="mode"]').forEach((radio) => {
    radio.addEventListener("change", () => { if (radio.checked) setMode(radio.value); });
  });

  function setMode(m) {
    mode = m;
    result.dataset.mode = m;
    document.body.classList.toggle("number-mode", m === "number");
    [canvas.width, canvas.height] = SIZES[m];
    numberView.hidden = m !== "number";
    strokes = [];
    current = null;
    redraw();
    setIdle();
  }

  // ------------------------------------------------------------------ predicting

  function setIdle() {
    result.dataset.state = "idle";
    result.dataset.noDigit = "false";
    result.dataset.notDigit = "false";
    result.dataset.uncertain = "false";
    digitOut.textContent = "?";
    statusOut.textContent = mode === "number" ? "Draw a number to start." : "Draw a digit to start.";
    setBars(null);
    numberOut.textContent = "";
    numberDigits.replaceChildren();
    pctx.clearRect(0, 0, 28, 28);
    showCorrect(false);
    showNeighbours(null);
    clearExplanation();
  }

  // ------------------------------------------------------------------ corrections

  // "Wrong? It's a _": shown under a one-digit answer when the server keeps corrections; sends
  // the very image that was answered, with the right class, to POST /api/corrections.
  function showCorrect(on) {
    correctForm.hidden = !(on && correctionsOn && mode === "digit");
    correctForm.dataset.state = "idle";
    correctLabel.selectedIndex = 0;
    correctStatus.textContent = "";
  }

  correctForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!lastSent || !correctLabel.value) return;
    correctForm.dataset.state = "busy";
    try {
      const resp = await fetch(`/api/corrections?label=${encodeURIComponent(correctLabel.value)}`, {
        method: "POST", headers: { "Content-Type": lastSent.type }, body: lastSent.body,
      });
      const data = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
      if (!resp.ok) throw new Error(`${data.error || "failed"}${data.detail ? " – " + data.detail : ""}`);
      correctForm.dataset.state = "saved";
      correctStatus.textContent = `Saved as ${data.label} (${data.count} corrections kept). Thank you!`;
    } catch (err) {
      correctForm.dataset.state = "error";
      correctStatus.textContent = `Not saved: ${err.message || err}`;
    }
  });

  function schedule() {
    clearTimeout(timer);
    if (isEmpty()) {
      seq++;  // drop any answer still on its way
      waiting = false;
      setIdle();
      return;
    }
    result.dataset.state = "busy";
    waiting = true;
    timer = setTimeout(() => { waiting = false; send(); }, DEBOUNCE_MS);
  }

  function canvasBlob() {
    return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  }

  async function send(file) {
    if (inFlight && !file) { again = true; return; }
    const mySeq = ++seq;
    inFlight = true;
    again = false;
    result.dataset.state = "busy";
    try {
      const body = file || (await canvasBlob());
      const type = (file && file.type && file.type.startsWith("image/")) ? file.type : "image/png";
      const url = mode === "number" ? "/api/predict/number?include_input=true"
        : neighbourUrl(`/api/predict?include_input=true${explainQuery()}`);
      const [resp, data] = await postWithNeighbours(url, type, body);
      if (mySeq !== seq) return;  // a newer request was sent meanwhile
      if (!resp.ok) { showError(data); return; }
      lastSent = { body, type };
      if (mode === "number") showNumber(data); else showDigit(data);
      showExplanation(mode === "number" ? null : data, !file);
      // "done" only when no newer drawing is waiting to be sent (tests wait for it).
      result.dataset.state = (again || waiting || current) ? "busy" : "done";
    } catch (err) {
      if (mySeq === seq) showError({ error: "cannot reach the server", detail: String(err) });
    } finally {
      inFlight = false;
      if (again) { again = false; send(); }
    }
  }

  function showError(data) {
    result.dataset.state = "error";
    digitOut.textContent = "!";
    statusOut.textContent = `Error: ${data.error || "failed"}${data.detail ? " – " + (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : ""}`;
    setBars(null);
    showCorrect(false);
    showNeighbours(null);
    clearExplanation();
  }

  function pct(x) { return `${(x * 100).toFixed(1)}%`; }

  function drawInput(target, tctx, img) {
    tctx.clearRect(0, 0, target.width, target.height);
    if (!img || !img.length) return;
    const h = img.length, w = img[0].length;
    const data = tctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = img[y][x], i = (y * w + x) * 4;
        data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
        data.data[i + 3] = 255;
      }
    }
    tctx.putImageData(data, 0, 0);
  }

  function showDigit(r) {
    result.dataset.noDigit = String(!!r.no_digit);
    result.dataset.notDigit = String(!!r.not_digit && !r.no_digit);
    result.dataset.uncertain = String(!!r.uncertain && !r.no_digit);
    if (r.no_digit || r.label === null || r.label === undefined) {
      digitOut.textContent = "–";
      statusOut.textContent = "No digit found: draw something.";
      setBars(null);
      showCorrect(false);
    } else if (r.not_digit) {
      // Ink, but not a digit: say so, and what it looks most like (the bars show how little).
      digitOut.textContent = "✗";
      statusOut.textContent = `Not a digit (closest: ${nameOf(r)}, ${pct(r.confidence)})`;
      setBars(r.probabilities);
      showCorrect(true);
    } else {
      const name = nameOf(r);
      digitOut.textContent = name;
      const next = r.top3 && r.top3[1];
      const second = next ? `; next: ${classes[next[0]] !== undefined ? classes[next[0]] : next[0]} (${pct(next[1])})` : "";
      statusOut.textContent = (r.uncertain ? `Not sure: ${name}` : `It's a ${name}`) + ` – ${pct(r.confidence)} confident${second}`;
      setBars(r.probabilities);
      showCorrect(true);
    }
    drawInput(preview, pctx, r.model_input);
    showNeighbours(r);
  }

  // ------------------------------------------------------------------ nearest training images

  // Asked for with every digit prediction while the server has an index for its model; a
  // server without one answers 409 "no neighbour index" once, and the page stops asking.
  let neighboursOn = true;
  const neighbourBox = $("neighbours");
  const neighbourRows = $("neighbour-rows");

  function neighbourUrl(url) { return neighboursOn ? `${url}&neighbours=true` : url; }

  async function postWithNeighbours(url, type, body) {
    const post = async (u) => {
      const resp = await fetch(u, { method: "POST", headers: { "Content-Type": type }, body });
      return [resp, await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }))];
    };
    let [resp, data] = await post(url);
    if (resp.status === 409 && data.error === "no neighbour index" && url.includes("neighbours=true")) {
      neighboursOn = false;
      [resp, data] = await post(url.replace("&neighbours=true", ""));
    }
    return [resp, data];
  }

  function showNeighbours(r) {
    neighbourRows.replaceChildren();
    const rows = r && !r.no_digit && Array.isArray(r.neighbours) ? r.neighbours : [];
    neighbourBox.hidden = rows.length === 0;
    const probability = new Map((r && r.top3 ? r.top3 : []).map(([k, p]) => [k, p]));
    for (const row of rows) {
      const li = document.createElement("li");
      li.dataset.label = String(row.label);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = row.name;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = probability.has(row.label) ? pct(probability.get(row.label)) : "";
      const strip = document.createElement("span");
      strip.className = "strip";
      row.images.forEach((png, i) => {
        const img = document.createElement("img");
        img.src = `data:image/png;base64,${png}`;
        img.width = img.height = 28;
        img.alt = `training image #${row.indices[i]}, a ${row.name}`;
        img.title = `training image #${row.indices[i]} (similarity ${row.similarity[i].toFixed(2)})`;
        strip.append(img);
      });
      li.append(name, value, strip);
      neighbourRows.append(li);
    }
  }

  function showNumber(r) {
    result.dataset.noDigit = String(!!r.no_digit);
    result.dataset.notDigit = String(!!r.not_digit && !r.no_digit);
    result.dataset.uncertain = String(!!r.uncertain && !r.no_digit);
    numberDigits.replaceChildren();
    if (r.no_digit || !r.text) {
      digitOut.textContent = "–";
      numberOut.textContent = "";
      statusOut.textContent = "No digits found: draw something.";
      pctx.clearRect(0, 0, 28, 28);
      return;
    }
    digitOut.textContent = r.text.length <= 2 ? r.text : "#";
    numberOut.textContent = r.text;
    statusOut.textContent = r.not_digit
      ? `Not all of it is digits (closest reading: ${r.text})`
      : `${r.uncertain ? "Not sure: " : "It reads "}${r.text} – ${pct(r.confidence)} confident`;
    (r.digits || []).forEach((d, i) => {
      const li = document.createElement("li");
      li.dataset.index = String(i);
      li.dataset.digit = d.label === null ? "" : String(d.label);  // the class number
      li.dataset.confidence = String(d.confidence);
      if (d.uncertain) li.classList.add("uncertain");
      if (d.not_digit) li.classList.add("not-digit");
      const c = document.createElement("canvas");
      c.width = 28; c.height = 28;
      c.setAttribute("aria-hidden", "true");
      drawInput(c, c.getContext("2d"), d.model_input);
      const span = document.createElement("span");
      span.className = "d";
      span.textContent = d.not_digit ? "✗" : d.label === null ? "?" : nameOf(d);
      const conf = document.createElement("span");
      conf.className = "c";
      conf.textContent = pct(d.confidence);
      li.append(c, span, conf);
      li.setAttribute("aria-label", d.not_digit ? `Piece ${i + 1}: not a digit`
        : `Digit ${i + 1}: ${span.textContent}, ${pct(d.confidence)} confident`);
      numberDigits.appendChild(li);
    });
    const first = (r.digits || [])[0];
    drawInput(preview, pctx, first && first.model_input);
  }

  // ------------------------------------------------------------------ why (explain=true)

  // "Show why": ask the server for a heatmap with each answer (explain=true on /api/predict) and
  // lay it over the 28x28 preview (pixel for pixel) and over the drawing. The heatmap is in the
  // model input's pixels; the ink's bounding box there is the digit's box (`box`) in the image
  // sent, so one scale and offset per axis maps the whole 28x28 field onto the canvas.
  const explainToggle = $("explain-toggle");
  const explainOverlay = $("explain-overlay");
  const previewExplain = $("preview-explain");
  const explainNote = $("explain-note");
  const HEAT_ALPHA = 210;  // the strongest pixel's opacity: the ink stays visible under it

  function explainQuery() { return explainToggle.checked ? "&explain=true" : ""; }

  function clearExplanation() {
    [explainOverlay, previewExplain].forEach((c) => {
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
      c.hidden = true;
      delete c.dataset.method;
    });
    explainNote.textContent = "";
  }

  function heatImage(heat) {
    const c = document.createElement("canvas");
    c.width = 28; c.height = 28;
    const cx = c.getContext("2d");
    const img = cx.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const v = heat[y][x], i = (y * 28 + x) * 4;
        // red-orange: evidence for the answer; blue: against it
        const rgb = v >= 0 ? [255, 72, 0] : [30, 110, 255];
        img.data[i] = rgb[0]; img.data[i + 1] = rgb[1]; img.data[i + 2] = rgb[2];
        img.data[i + 3] = Math.round(Math.min(1, Math.abs(v)) * HEAT_ALPHA);
      }
    }
    cx.putImageData(img, 0, 0);
    return c;
  }

  function inkBox(input) {
    let x0 = 28, y0 = 28, x1 = -1, y1 = -1;
    input.forEach((row, y) => row.forEach((v, x) => {
      if (v > 0) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
    }));
    return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
  }

  // `onCanvas`: the answer is for the canvas itself (not an uploaded file, whose pixels differ).
  function showExplanation(r, onCanvas) {
    const e = r && r.explanation;
    if (!explainToggle.checked || !e || !Array.isArray(e.heatmap) || e.heatmap.length !== 28) {
      clearExplanation();
      return;
    }
    const heat = heatImage(e.heatmap);
    const p = previewExplain.getContext("2d");
    p.clearRect(0, 0, 28, 28);
    p.drawImage(heat, 0, 0);
    previewExplain.hidden = false;
    previewExplain.dataset.method = e.method;
    explainOverlay.width = canvas.width;
    explainOverlay.height = canvas.height;
    const o = explainOverlay.getContext("2d");
    o.clearRect(0, 0, explainOverlay.width, explainOverlay.height);
    const ink = r.model_input && inkBox(r.model_input);
    if (onCanvas && ink && Array.isArray(r.box)) {
      const sx = (r.box[2] - r.box[0]) / (ink[2] - ink[0]), sy = (r.box[3] - r.box[1]) / (ink[3] - ink[1]);
      o.imageSmoothingEnabled = true;
      o.drawImage(heat, r.box[0] - ink[0] * sx, r.box[1] - ink[1] * sy, 28 * sx, 28 * sy);
      explainOverlay.hidden = false;
      explainOverlay.dataset.method = e.method;
    } else {
      explainOverlay.hidden = true;
    }
    const name = nameOf(r);
    explainNote.textContent = `Why ${name}: ${e.method.replace(/_/g, " ")} – red pixels speak for ${name}, blue against it.`;
  }

  explainToggle.addEventListener("change", () => {
    if (!explainToggle.checked) clearExplanation();
    if (!isEmpty()) schedule();  // ask again, with or without the heatmap
  });

  // ------------------------------------------------------------------ uploads

  function useFile(file) {
    if (!file) return;
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { background = img; strokes = []; redraw(); URL.revokeObjectURL(url); };
    img.onerror = () => { URL.revokeObjectURL(url); };
    img.src = url;
    clearTimeout(timer);
    waiting = false;
    send(file);  // the original file, not the canvas copy: the server sees every pixel
  }

  fileInput.addEventListener("change", () => {
    useFile(fileInput.files && fileInput.files[0]);
    fileInput.value = "";
  });

  ["dragenter", "dragover"].forEach((t) => pad.addEventListener(t, (ev) => {
    ev.preventDefault();
    pad.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((t) => pad.addEventListener(t, (ev) => {
    ev.preventDefault();
    pad.classList.remove("dragover");
  }));
  pad.addEventListener("drop", (ev) => {
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (f) useFile(f);
  });

  // ------------------------------------------------------------------ start

  fetch("/api/health").then((r) => r.json()).then((h) => {
    const acc = typeof h.test_accuracy === "number" ? `, ${(h.test_accuracy * 100).toFixed(2)}% on the MNIST test set` : "";
    $("model-line").textContent = `Model ${h.model_id || "?"} (${h.preset || "?"}${acc}), runtime ${h.runtime || "?"}, digitlab ${h.version}`;
  }).catch(() => { $("model-line").textContent = "Model information unavailable."; });

  fetch("/api/model").then((r) => r.json()).then((m) => {
    const names = m.model && m.model.classes;
    if (Array.isArray(names) && names.length && names.join("\n") !== classes.join("\n")) {
      buildClasses(names.map(String));
      setIdle();
    }
    correctionsOn = !!(m.corrections && m.corrections.enabled);
    document.body.dataset.corrections = String(correctionsOn);
  }).catch(() => {});

  resetCanvas();
  setIdle();
})();
