// Overlap-tile geometry and pixel conversion: a line-by-line port of
// unet_hub/infer/tiling.py and unet_hub/data/images.py (to_model_input), so the page cuts,
// mirrors and cross-fades tiles exactly as segment() does. Keep the two in step.
"use strict";

const UNetGeometry = (() => {
  const ALIGN = 16;
  const BLEND = 32;

  function roundUp(n, multiple = ALIGN) {
    return Math.ceil(n / multiple) * multiple;
  }

  // Weights over a tile: 0 on the outer `context` px, then a linear ramp of `blend` px to 1.
  function blendWindow(tile, context, blend) {
    const w = new Float64Array(tile);
    for (let t = 0; t < tile; t++) {
      const edge = Math.min(t, tile - 1 - t);
      w[t] = blend === 0 ? (edge >= context ? 1 : 0)
        : Math.min(1, Math.max(0, (edge - context + 0.5) / blend));
    }
    return w;
  }

  // Restrict the window to the image for each tile and normalise by the total weight.
  function normalisedPlan(length, tile, starts, window) {
    const total = new Float64Array(length);
    for (const start of starts) {
      const lo = Math.max(0, -start), hi = Math.min(tile, length - start);
      for (let t = lo; t < hi; t++) total[start + t] += window[t];
    }
    const spans = [], weights = [];
    for (const start of starts) {
      let lo = Math.max(0, -start), hi = Math.min(tile, length - start);
      let first = -1, last = -1;
      for (let t = lo; t < hi; t++) if (window[t] !== 0) { if (first < 0) first = t; last = t; }
      lo = first; hi = last + 1;
      const w = new Float32Array(hi - lo);
      for (let t = lo; t < hi; t++) w[t - lo] = window[t] / total[start + t];
      spans.push([lo, hi]);
      weights.push(w);
    }
    return { length, tile, starts, spans, weights };
  }

  function wholeAxis(length) {
    const tile = roundUp(length);
    return normalisedPlan(length, tile, [0], new Float64Array(tile).fill(1));
  }

  function tiledAxis(length, tile, overlap) {
    const blend = Math.min(overlap, BLEND);
    const context = Math.floor((overlap - blend) / 2);
    const pad = roundUp(context);
    let starts;
    if (length + 2 * pad <= tile) {
      tile = roundUp(length + 2 * pad);
      starts = [-pad];
    } else {
      const stride = Math.floor((tile - overlap) / ALIGN) * ALIGN;
      const nTiles = 1 + Math.ceil((length + context + pad - tile) / stride);
      starts = Array.from({ length: nTiles }, (_, k) => -pad + k * stride);
    }
    return normalisedPlan(length, tile, starts, blendWindow(tile, context, blend));
  }

  // Mirror without repeating the edge pixel (np.pad "reflect"); a 1-px axis is repeated.
  function mirrorIndices(n, start, stop) {
    const out = new Int32Array(stop - start);
    const period = 2 * (n - 1);
    for (let i = 0; i < out.length; i++) {
      if (n === 1) { out[i] = 0; continue; }
      const folded = (((start + i) % period) + period) % period;  // Python's modulo
      out[i] = folded < n ? folded : period - folded;
    }
    return out;
  }

  function planTiles(height, width, tileSize, overlap) {
    if (tileSize === null || (height <= tileSize && width <= tileSize)) {
      return [wholeAxis(height), wholeAxis(width)];
    }
    return [tiledAxis(height, tileSize, overlap), tiledAxis(width, tileSize, overlap)];
  }

  // -- pixels -> model input (to_channels + scale_to_unit of unet_hub/data/images.py) -----

  // OpenCV's RGB2GRAY: 15-bit fixed point for 8- and 16-bit images (bit-exact on both),
  // float weights otherwise.
  function greyOf(r, g, b, isFloat) {
    if (isFloat) return Math.fround(0.299 * r + 0.587 * g + 0.114 * b);
    return Math.floor((r * 9798 + g * 19235 + b * 3735 + 16384) / 32768);
  }

  // The per-image statistics of scaling_statistics in unet_hub/data/images.py: over every
  // pixel and channel, in double precision (float64), rounded to float32 before use.
  const ZSCORE_EPSILON = 1e-6;

  function minMax(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }

  function meanStd(values) {  // population standard deviation (numpy's ddof 0)
    let sum = 0;
    for (const v of values) sum += v;
    const mean = sum / values.length;
    let squares = 0;
    for (const v of values) squares += (v - mean) * (v - mean);
    return [mean, Math.sqrt(squares / values.length)];
  }

  function percentiles(values, ...ps) {  // numpy's default (linear) definition
    const sorted = Float64Array.from(values).sort();
    const n = sorted.length;
    return ps.map((p) => {
      const rank = (p / 100) * (n - 1), below = Math.floor(rank), t = rank - below;
      const a = sorted[below], b = sorted[Math.min(below + 1, n - 1)];
      return a + t * (b - a);
    });
  }

  // `pixels`: H*W*channels interleaved (Uint8Array, Uint16Array or Float32Array).
  // Returns a Float32Array nChannels*H*W (in [0, 1] for every scaling but zscore).
  function toModelInput(pixels, height, width, channels, nChannels, scaling) {
    const isFloat = pixels instanceof Float32Array;
    let c = channels;
    if ((c === 2 || c === 4) && c !== nChannels) c -= 1;  // an alpha channel is dropped
    if (c !== nChannels && !(c === 3 && nChannels === 1) && c !== 1) {
      throw new Error(`cannot turn a ${channels}-channel image into the ${nChannels} channels the model takes`);
    }
    const n = height * width;
    const raw = new Float32Array(nChannels * n);
    for (let i = 0; i < n; i++) {
      const p = i * channels;
      if (c === nChannels) {
        for (let k = 0; k < nChannels; k++) raw[k * n + i] = pixels[p + k];
      } else if (c === 3) {
        raw[i] = greyOf(pixels[p], pixels[p + 1], pixels[p + 2], isFloat);
      } else {
        for (let k = 0; k < nChannels; k++) raw[k * n + i] = pixels[p];
      }
    }
    if (scaling === "minmax" || scaling === "percentile") {
      // per-image range: min and max, or the 0.5 and 99.5 percentiles; clip, then to [0, 1]
      const [lo, hi] = (scaling === "minmax" ? minMax(raw) : percentiles(raw, 0.5, 99.5)).map(Math.fround);
      const span = Math.fround(hi - lo);
      for (let i = 0; i < raw.length; i++) {
        const v = Math.min(hi, Math.max(lo, raw[i]));
        raw[i] = hi > lo ? Math.fround(Math.fround(v - lo) / span) : 0;
      }
    } else if (scaling === "zscore") {
      const [mean, std] = meanStd(raw).map(Math.fround);
      for (let i = 0; i < raw.length; i++) {
        raw[i] = std < ZSCORE_EPSILON ? 0 : Math.fround(Math.fround(raw[i] - mean) / std);
      }
    } else if (isFloat) {
      for (let i = 0; i < raw.length; i++) raw[i] = Math.min(1, Math.max(0, raw[i]));
    } else {
      const max = pixels instanceof Uint16Array ? 65535 : 255;
      for (let i = 0; i < raw.length; i++) raw[i] = raw[i] / max;
    }
    return raw;
  }

  return { ALIGN, roundUp, blendWindow, wholeAxis, tiledAxis, mirrorIndices, planTiles, toModelInput };
})();

self.UNetGeometry = UNetGeometry;
