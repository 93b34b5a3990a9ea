// The network runs here, off the page's thread: decode the file, convert it as segment()
// does, cut it into overlap-tiles (geometry.js), run each through ONNX Runtime Web and
// cross-fade the probabilities into one buffer. Messages: {type: "progress"|"result"|"error"}.
"use strict";

self.window = self;  // UPNG.js registers itself on `window`
importScripts(
  "vendor/ort.wasm.min.js", "vendor/pako_inflate.min.js", "vendor/UTIF.js", "vendor/UPNG.js",
  "geometry.js",
);

let sessionPromise = null;
let settings = null;

function fail(message) {
  const error = new Error(message);
  error.userFacing = true;
  throw error;
}

// What a non-image file is, from its first bytes (as unet_hub/data/images.py says it).
function whatItIs(head) {
  const text = new TextDecoder().decode(head).trimStart().toLowerCase();
  if (head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4) return "a ZIP archive";
  if (text.startsWith("%pdf")) return "a PDF document";
  if (text.startsWith("<!doctype html") || text.startsWith("<html")) return "an HTML page";
  if (head.length && head.every((b) => (b >= 32 && b < 127) || b === 9 || b === 10 || b === 13)) return "a text file";
  return null;
}

function checkPixels(name, width, height) {
  if (width * height > settings.max_pixels) {
    fail(`${name}: ${width}×${height} pixels is more than this page's limit of ` +
      `${settings.max_pixels.toLocaleString("en")}; downscale or crop it first`);
  }
}

function decodeTiff(name, buffer) {
  let ifds;
  try { ifds = UTIF.decode(buffer); } catch (e) { fail(`${name}: the TIFF data is truncated or corrupted; export the image again`); }
  const pages = ifds.filter((ifd) => ifd.t256 && ifd.t257);
  if (pages.length === 0) fail(`${name}: the TIFF file holds no image`);
  if (pages.length > 1) fail(`${name}: a ${pages.length}-page TIFF file; save the page to segment as a single image`);
  const ifd = pages[0];
  const width = ifd.t256[0], height = ifd.t257[0];
  checkPixels(name, width, height);
  try { UTIF.decodeImage(buffer, ifd); } catch (e) { fail(`${name}: the TIFF data is truncated or corrupted; export the image again`); }
  const bits = ifd.t258 ? ifd.t258[0] : 1;
  const channels = ifd.t277 ? ifd.t277[0] : 1;
  const format = ifd.t339 ? ifd.t339[0] : 1;
  const photometric = ifd.t262 ? ifd.t262[0] : 1;
  if (photometric === 3) fail(`${name}: a palette TIFF; save it as greyscale or RGB`);
  const n = width * height * channels;
  const bytes = ifd.data;
  let pixels;
  if (bits === 8) pixels = new Uint8Array(bytes.buffer, bytes.byteOffset, n).slice();
  else if (bits === 16 && format !== 3) {
    pixels = new Uint16Array(n);  // UTIF hands 16-bit samples over little-endian
    for (let i = 0; i < n; i++) pixels[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  } else if (bits === 32 && format === 3) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const littleEndian = new Uint8Array(buffer)[0] === 0x49;
    pixels = new Float32Array(n);
    for (let i = 0; i < n; i++) pixels[i] = view.getFloat32(4 * i, littleEndian);
  } else {
    fail(`${name}: ${bits}-bit TIFF samples are not supported here; save it as 8- or 16-bit`);
  }
  return { pixels, width, height, channels };
}

// Browsers decode 16-bit PNGs to 8 bits; segment() uses all 16, so UPNG.js decodes them.
function decodePng16(name, buffer) {
  let png;
  try { png = UPNG.decode(buffer); } catch (e) { fail(`${name}: the PNG data is truncated or corrupted; export the image again`); }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[png.ctype];
  if (!channels) fail(`${name}: an unsupported 16-bit PNG colour type; save it as greyscale or RGB`);
  const n = png.width * png.height * channels;
  const bytes = new Uint8Array(png.data);
  const pixels = new Uint16Array(n);
  for (let i = 0; i < n; i++) pixels[i] = (bytes[2 * i] << 8) | bytes[2 * i + 1];  // big-endian
  return { pixels, width: png.width, height: png.height, channels };
}

async function decodeWithBrowser(name, blob, head) {
  // PNG declares its size in the header: refuse a decompression bomb before decoding.
  if (head[0] === 0x89 && head[1] === 0x50 && head.length >= 24) {
    const view = new DataView(head.buffer, head.byteOffset);
    checkPixels(name, view.getUint32(16), view.getUint32(20));
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (e) {
    const kind = whatItIs(head.subarray(0, 64));
    if (kind) fail(`${name}: this is ${kind}, not an image; give a PNG, JPEG, TIFF, BMP or WebP file`);
    fail(`${name}: not a readable image (supported: PNG, JPEG, TIFF, BMP, WebP)`);
  }
  const { width, height } = bitmap;
  checkPixels(name, width, height);
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height, { colorSpace: "srgb" }).data;
  return { pixels: new Uint8Array(rgba.buffer), width, height, channels: 4 };
}

async function decode(file) {
  if (file.size === 0) fail(`${file.name}: the file is empty; replace it with a real image`);
  if (file.size > settings.max_file_bytes) {
    fail(`${file.name}: ${(file.size / 1e6).toFixed(1)} MB is more than this page's limit of ` +
      `${settings.max_file_bytes / 1e6} MB; downscale or crop it first`);
  }
  const buffer = await file.arrayBuffer();
  const head = new Uint8Array(buffer, 0, Math.min(buffer.byteLength, 64));
  const isTiff = (head[0] === 0x49 && head[1] === 0x49 && head[2] === 42) ||
    (head[0] === 0x4d && head[1] === 0x4d && head[3] === 42);
  if (isTiff) return decodeTiff(file.name, buffer);
  const isPng16 = head[0] === 0x89 && head[1] === 0x50 && head.length >= 25 && head[24] === 16;
  if (isPng16) {
    const view = new DataView(buffer);
    checkPixels(file.name, view.getUint32(16), view.getUint32(20));
    return decodePng16(file.name, buffer);
  }
  return decodeWithBrowser(file.name, file, head);
}

// The image as the model sees it (display_image in unet_hub/infer/visualize.py), RGBA.
function displayPicture(x, nChannels, n) {
  const rgba = new Uint8ClampedArray(4 * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) rgba[4 * i + k] = Math.round(x[(nChannels === 1 ? 0 : k) * n + i] * 255);
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

function session() {
  if (!sessionPromise) {
    ort.env.wasm.wasmPaths = new URL("vendor/", self.location.href).href;
    // Threads need cross-origin isolation (the COOP/COEP headers in README.md).
    ort.env.wasm.numThreads = settings.threads && self.crossOriginIsolated
      ? Math.min(navigator.hardwareConcurrency || 1, 8) : 1;
    sessionPromise = ort.InferenceSession.create(settings.model_url, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all",
    });
  }
  return sessionPromise;
}

function probabilitiesOf(logits, classes, size) {
  const p = new Float32Array(logits.length);
  if (classes === 1) {
    for (let i = 0; i < p.length; i++) p[i] = 1 / (1 + Math.exp(-logits[i]));
    return p;
  }
  for (let i = 0; i < size; i++) {  // softmax over the class axis
    let max = -Infinity, sum = 0;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[k * size + i]);
    for (let k = 0; k < classes; k++) sum += (p[k * size + i] = Math.exp(logits[k * size + i] - max));
    for (let k = 0; k < classes; k++) p[k * size + i] /= sum;
  }
  return p;
}

async function segment(image) {
  const { n_channels: nChannels, n_classes: classes, input_scaling: scaling } = settings.config;
  const { width, height } = image;
  const x = UNetGeometry.toModelInput(image.pixels, height, width, image.channels, nChannels, scaling);
  const [rows, cols] = UNetGeometry.planTiles(height, width, settings.tile_size, settings.overlap);
  const out = new Float32Array(classes * height * width);
  const net = await session();
  const rowIndex = rows.starts.map((s) => UNetGeometry.mirrorIndices(height, s, s + rows.tile));
  const colIndex = cols.starts.map((s) => UNetGeometry.mirrorIndices(width, s, s + cols.tile));
  const total = rows.starts.length * cols.starts.length;
  const plane = height * width, th = rows.tile, tw = cols.tile;
  const tile = new Float32Array(nChannels * th * tw);
  const started = performance.now();
  let done = 0, networkMs = 0;
  postMessage({ type: "progress", done, total });
  for (let i = 0; i < rows.starts.length; i++) {
    for (let j = 0; j < cols.starts.length; j++) {
      for (let k = 0; k < nChannels; k++) {
        for (let r = 0; r < th; r++) {
          const src = k * plane + rowIndex[i][r] * width, dst = (k * th + r) * tw;
          for (let c = 0; c < tw; c++) tile[dst + c] = x[src + colIndex[j][c]];
        }
      }
      const feeds = { [net.inputNames[0]]: new ort.Tensor("float32", tile, [1, nChannels, th, tw]) };
      const before = performance.now();
      const logits = (await net.run(feeds))[net.outputNames[0]].data;
      networkMs += performance.now() - before;
      const p = probabilitiesOf(logits, classes, th * tw);
      const [y0, y1] = rows.spans[i], [x0, x1] = cols.spans[j];
      const top = rows.starts[i] + y0, left = cols.starts[j] + x0;
      for (let k = 0; k < classes; k++) {
        for (let r = y0; r < y1; r++) {
          const wr = rows.weights[i][r - y0];
          const src = (k * th + r) * tw, dst = k * plane + (top + r - y0) * width + left - x0;
          for (let c = x0; c < x1; c++) out[dst + c] += p[src + c] * Math.fround(wr * cols.weights[j][c - x0]);
        }
      }
      postMessage({ type: "progress", done: ++done, total });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    probabilities: out, picture: displayPicture(x, nChannels, plane), width, height, classes,
    seconds, networkSeconds: networkMs / 1000,
  };
}

onmessage = async (event) => {
  const message = event.data;
  try {
    if (message.type === "init") {
      settings = message.settings;
      await session();
      postMessage({ type: "ready", threads: ort.env.wasm.numThreads });
      return;
    }
    const image = await decode(message.file);
    const result = await segment(image);
    postMessage({ type: "result", id: message.id, ...result }, [result.probabilities.buffer, result.picture.buffer]);
  } catch (error) {
    const text = error.userFacing ? error.message
      : `Segmentation failed on ${message.file ? message.file.name : "this page"}: ${error.message || error}`;
    postMessage({ type: "error", id: message.id, message: text });
  }
};
