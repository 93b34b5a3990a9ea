// The page: pick/drop/paste an image, hand it to the worker, draw what comes back, and
// re-threshold without rerunning the network. Settings come from space.json (written by
// `unet-hub space build`); window.unetHub exposes the last result for tests and benchmarks.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { settings: null, worker: null, result: null, inputName: null, nextId: 0, pending: new Map() };

function show(id, visible) { $(id).hidden = !visible; }

function setStatus(text, stateName) {
  $("status").textContent = text;
  $("status").dataset.state = stateName;
}

function showError(text) {
  $("error").textContent = text;
  show("error", Boolean(text));
}

// -- drawing -------------------------------------------------------------------------------

function drawRGBA(canvas, rgba, width, height) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
}

// 255 where the foreground probability exceeds the threshold; the argmax class for several.
function labelsOf(result, threshold) {
  const n = result.width * result.height;
  const labels = new Uint8Array(n);
  const p = result.probabilities;
  if (result.classes === 1) {
    const t = Math.fround(threshold);  // NumPy compares float32 probabilities in float32
    for (let i = 0; i < n; i++) labels[i] = p[i] > t ? 1 : 0;
    return labels;
  }
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < result.classes; k++) if (p[k * n + i] > p[best * n + i]) best = k;
    labels[i] = best;
  }
  return labels;
}

function maskValues(result, labels) {
  return result.classes === 1 ? labels.map((v) => v * 255) : labels;
}

function drawOverlay(result, labels) {
  const { palette, alpha } = state.settings;
  const rgba = new Uint8ClampedArray(result.picture);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === 0) continue;
    const colour = palette[(labels[i] - 1) % palette.length];
    for (let k = 0; k < 3; k++) rgba[4 * i + k] = Math.round((1 - alpha) * rgba[4 * i + k] + alpha * colour[k]);
  }
  drawRGBA($("overlay"), rgba, result.width, result.height);
}

function drawMask(values, result) {
  const rgba = new Uint8ClampedArray(4 * values.length);
  const scale = result.classes === 1 ? 1 : Math.floor(255 / Math.max(1, result.classes - 1));
  for (let i = 0; i < values.length; i++) {
    rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = values[i] * scale;
    rgba[4 * i + 3] = 255;
  }
  drawRGBA($("mask"), rgba, result.width, result.height);
}

function drawProbability(result) {
  const n = result.width * result.height, lut = state.settings.viridis;
  const rgba = new Uint8ClampedArray(4 * n);
  for (let i = 0; i < n; i++) {
    let p = result.probabilities[i];
    for (let k = 1; k < result.classes; k++) p = Math.max(p, result.probabilities[k * n + i]);
    const colour = lut[Math.round(Math.min(1, Math.max(0, p)) * 255)];
    rgba.set(colour, 4 * i);
    rgba[4 * i + 3] = 255;
  }
  drawRGBA($("probability"), rgba, result.width, result.height);
}

// -- the mask as a greyscale PNG (what `unet-hub predict` writes) ---------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function greyPng(values, width, height) {
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8);  // 8-bit greyscale
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) raw.set(values.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", zlib), chunk("IEND", new Uint8Array())], { type: "image/png" });
}

async function render() {
  const result = state.result;
  if (!result) return;
  const threshold = Number($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  const labels = labelsOf(result, threshold);
  const values = maskValues(result, labels);
  drawOverlay(result, labels);
  drawMask(values, result);
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(await greyPng(values, result.width, result.height));
  link.download = `${state.inputName.replace(/\.[^.]*$/, "")}_mask.png`;
  link.textContent = `Download ${link.download}`;
  show("download", true);
  $("download").dataset.threshold = String(threshold);
}

// -- running -------------------------------------------------------------------------------

function runWorker(message) {
  return new Promise((resolve, reject) => {
    const id = state.nextId++;
    state.pending.set(id, { resolve, reject });
    state.worker.postMessage({ ...message, id });
  });
}

async function segmentFile(file) {
  showError("");
  state.result = null;
  show("results", false);
  setStatus(`Segmenting ${file.name}…`, "running");
  $("progress").value = 0;
  show("progress", true);
  const started = performance.now();
  try {
    const result = await runWorker({ type: "segment", file });
    result.pageSeconds = (performance.now() - started) / 1000;  // decoding included
    state.result = result;
    state.inputName = file.name;
    drawProbability(result);
    await render();
    show("results", true);
    setStatus(`${file.name}: ${result.width}×${result.height} px segmented in ${result.seconds.toFixed(2)} s, in this browser.`, "done");
  } catch (error) {
    showError(error.message);
    setStatus("Nothing segmented.", "error");
  } finally {
    show("progress", false);
    document.body.dataset.runs = String(Number(document.body.dataset.runs || 0) + 1);
  }
}

function onWorkerMessage(event) {
  const message = event.data;
  if (message.type === "progress") {
    $("progress").max = message.total;
    $("progress").value = message.done;
    return;
  }
  if (message.type === "ready") {
    state.threads = message.threads;
    setStatus(`Ready: the model runs in this browser (WebAssembly, ${message.threads} thread${message.threads === 1 ? "" : "s"}).`, "ready");
    $("file").disabled = false;
    return;
  }
  const pending = state.pending.get(message.id);
  if (!pending) {
    if (message.type === "error") { showError(message.message); setStatus("The model could not start.", "error"); }
    return;
  }
  state.pending.delete(message.id);
  if (message.type === "error") pending.reject(new Error(message.message));
  else pending.resolve(message);
}

// -- wiring --------------------------------------------------------------------------------

function describe(settings) {
  $("title").textContent = settings.title;
  $("description").innerHTML = settings.description_html;
  const slider = $("threshold");
  slider.value = settings.config.threshold;
  $("threshold-value").textContent = Number(settings.config.threshold).toFixed(2);
  show("threshold-row", settings.config.n_classes === 1);
  const examples = $("examples");
  for (const name of settings.examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.title = name;
    const img = document.createElement("img");
    img.src = `examples/${name}`;
    img.alt = `example ${name}`;
    button.append(img);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(`examples/${name}`)).blob();
      segmentFile(new File([blob], name, { type: blob.type }));
    });
    examples.append(button);
  }
  show("examples-box", settings.examples.length > 0);
}

async function main() {
  const settings = await (await fetch("space.json")).json();
  const params = new URLSearchParams(location.search);
  settings.threads = params.get("threads") !== "0";
  settings.model_url = new URL(params.get("int8") === "1" && settings.int8_model ? settings.int8_model : settings.model, location.href).href;
  state.settings = settings;
  describe(settings);
  state.worker = new Worker("worker.js");
  state.worker.onmessage = onWorkerMessage;
  state.worker.postMessage({ type: "init", settings });

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    $("file").value = "";  // so that choosing the same file again segments it again
    if (file) segmentFile(file);
  });
  $("threshold").addEventListener("input", () => render());
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) segmentFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...e.clipboardData.files][0];
    if (file) segmentFile(file);
  });
}

window.unetHub = {
  segmentFile,
  get threads() { return state.threads; },  // WebAssembly threads ONNX Runtime Web uses
  get result() { return state.result; },
  // The last probabilities as base64 float32 (little-endian), for tests and benchmarks.
  probabilitiesBase64() {
    const bytes = new Uint8Array(state.result.probabilities.buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
};

main().catch((error) => { showError(`The page could not start: ${error.message}`); setStatus("", "error"); });
