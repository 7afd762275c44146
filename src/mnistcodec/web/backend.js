// The playground's JSON API answered in the page by mnistcodec.js (no server).
//
// `mnistcodec export MODEL --web DIR` writes index.html (the playground page of
// `mnistcodec serve`), this file, mnistcodec.js, the model and manifest.json. The page's
// api(path, options) hands every /api/... request to `request` below, which answers what
// the Python server answers (src/mnistcodec/playground/service.py) from the model files the
// manifest names: nothing leaves the folder. Differences from the server: drawings are
// fitted to MNIST's form by the port below (Lanczos resampling as Pillow's, in floating
// point), `info_bits` is the information under the integer tables, random digits come from
// this library's generator, and test digits and the JPEG/WebP/AVIF comparison need the
// server. At a codebook level (model format version 2) a digit is one codeword index: the
// latents view is empty and names the codeword, as the server's.

import { loadModel, MnistCodecError, inspect, psnr } from "./mnistcodec.js";

const MAX_BODY_BYTES = 1 << 20;
const MAX_WEB_SAMPLES = 64;
const MAX_DECODED_DIGITS = 1024;
const BOX = 20;
const INK_FLOOR = 0.1;
const FLAT_FRAME = 8;
const SERVER_ONLY = "needs the Python server (mnistcodec serve)";

/** The back-end of an exported folder: the models of `manifest.json`, loaded once. */
export async function createBackend(manifestUrl = "manifest.json") {
  const response = await fetch(manifestUrl);
  if (!response.ok) throw new Error(`cannot read ${manifestUrl}: HTTP ${response.status}`);
  const manifest = await response.json();
  const models = {};
  for (const entry of manifest.models) models[entry.name] = await loadModel(new URL(entry.file, new URL(manifestUrl, location.href)).href);
  return new Backend(models, manifest.default);
}

export class Backend {
  constructor(models, defaultName) {
    this.models = models;
    this.default = defaultName;
  }

  model(name) {
    const model = this.models[name || this.default];
    if (!model) throw new Error(`unknown model ${JSON.stringify(name)}; this page has ${Object.keys(this.models).join(", ")}`);
    return model;
  }

  /** What the server's route answers: a JSON value or a Blob; an Error with its message otherwise. */
  async request(path, options = {}) {
    try {
      return await this.route(path, options);
    } catch (err) {
      if (err instanceof MnistCodecError) {
        const error = new Error(err.message);
        error.status = 400;
        throw error;
      }
      throw err;
    }
  }

  async route(path, options) {
    const url = new URL(path, "http://page/");
    const q = url.searchParams;
    const body = options.body ? new Uint8Array(await new Response(options.body).arrayBuffer()) : null;
    if (body && body.length > MAX_BODY_BYTES) throw new MnistCodecError("InputError", `the body holds more than ${MAX_BODY_BYTES} bytes`);
    switch (url.pathname) {
      case "/api/models":
        return { default: this.default, models: Object.keys(this.models).map((name) => this.describe(name)) };
      case "/api/compress":
        return this.compress(body, q);
      case "/api/mnc": {
        const { model, level, digit } = await this.coding(body, q);
        return new Blob([model.compress(digit, { level })], { type: "application/octet-stream" });
      }
      case "/api/compare": {
        const { model, level, digit } = await this.coding(body, q);
        const bits = model.compressDetailed(digit, { level }).digits[0].bits;
        const codecs = [
          ["jpeg", "JPEG"],
          ["webp", "WebP"],
          ["avif", "AVIF"],
        ].map(([codec, label]) => ({ codec, label, error: SERVER_ONLY }));
        return { target_bytes: Math.ceil(bits / 8), target_bits: bits, codecs };
      }
      case "/api/sample": {
        const n = Number(q.get("n") ?? 16);
        if (!Number.isInteger(n) || n < 1 || n > MAX_WEB_SAMPLES) throw new MnistCodecError("InputError", `n must be from 1 to ${MAX_WEB_SAMPLES}, got ${q.get("n")}`);
        const seed = Number(q.get("seed") ?? 0);
        const level = q.get("level") === null ? null : Number(q.get("level"));
        const { images } = this.model(q.get("model")).sample(n, seed, { nbytes: Number(q.get("bytes") ?? 8), level });
        return pngBlob(grid(images, n));
      }
      case "/api/decode":
        return this.decode(body, q.get("model"));
      case "/api/test-digit":
        throw new MnistCodecError("InputError", `MNIST test digits ${SERVER_ONLY}; draw a digit or drop an image`);
      default:
        throw new MnistCodecError("InputError", `no route ${url.pathname}`);
    }
  }

  describe(name) {
    const model = this.models[name];
    return {
      name,
      default: name === this.default,
      fingerprint: model.fingerprint,
      variable_rate: model.variableRate,
      levels: model.levels,
      lambdas: model.lambdas,
      default_level: model.referenceLevel,
      latent_dims: model.dims,
    };
  }

  async coding(body, q) {
    const model = this.model(q.get("model"));
    if (q.get("level") !== null && q.get("lmbda") !== null) throw new MnistCodecError("InputError", "give level or lmbda, not both");
    let level = model.referenceLevel;
    if (q.get("lmbda") !== null) level = model.levelForLambda(Number(q.get("lmbda")));
    if (q.get("level") !== null) level = model.checkLevel(Number(q.get("level")));
    if (!body || !body.length) throw new MnistCodecError("InputError", "the image is empty; expected an image");
    const rgba = await decodeImage(body);
    const digit = q.get("fit") === "false" ? exact(rgba) : fitToMnist(rgba.data, rgba.width, rgba.height);
    return { model, level, digit };
  }

  async compress(body, q) {
    const { model, level, digit } = await this.coding(body, q);
    const k = model.chooseLatents(digit, level);
    const symbols = model.symbols(k, level);
    const string = model.encodeDigit(symbols, level);
    const decoded = model.synthesise(k, level);
    const view = model.isCodebookLevel(level) ? codewordView(model, level, symbols) : latentView(model, k, level, symbols);
    let binary = "";
    for (let i = 0; i < string.bits; i++) binary += (string.bytes[i >> 3] >> (7 - (i & 7))) & 1;
    let diff = 0;
    for (let i = 0; i < 784; i++) diff += Math.abs(digit[i] - decoded[i]);
    return {
      model: q.get("model") || this.default,
      level,
      lmbda: model.lambdas[level],
      string_hex: Array.from(string.bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
      string_bytes: string.bytes.length,
      string_bits: string.bits,
      string_binary: binary,
      info_bits: view.info,
      psnr_db: psnr(digit, decoded),
      mad: diff / 784 / 255,
      input_png: pngBase64(digit, 28, 28),
      reconstruction_png: pngBase64(decoded, 28, 28),
      latents: view.latents,
    };
  }

  decode(body, name) {
    if (!body || !body.length) throw new MnistCodecError("FormatError", "empty file, not an mnistcodec compressed file");
    const info = inspect(body);
    if (info.count > MAX_DECODED_DIGITS) {
      throw new MnistCodecError("InputError", `the file holds ${info.count} digits; the playground decodes at most ${MAX_DECODED_DIGITS} (use mnistcodec decompress)`);
    }
    if (!name) {
      name = Object.keys(this.models).find((n) => this.models[n].fingerprint === info.fingerprint);
      if (!name) throw new MnistCodecError("WrongModelError", `the file was written by model ${info.fingerprint.slice(0, 16)}, which this page does not have`);
    }
    const result = this.model(name).decompress(body);
    return {
      model: name,
      count: result.count,
      mode: result.mode,
      file_bytes: body.length,
      levels: result.levels.slice(0, MAX_DECODED_DIGITS),
      grid_png: gridBase64(grid(result.images, result.count)),
      first_png: pngBase64(result.images.subarray(0, 784), 28, 28),
    };
  }
}

/**
 * A codebook level's digit (the server's latent_view there): no latents, every list empty;
 * `codebook` holds the codeword's index, the level's number of codewords and the index's bits.
 */
function codewordView(model, level, symbols) {
  const bits = model.informationBits(symbols, level);
  const codebook = { index: symbols.columns[0], codewords: model.codebooks.get(level).size, bits };
  const latents = { values: [], k: [], bits: [], step: [], prior_values: [], prior_probs: [], component: null, component_bits: 0, codebook };
  return { latents, info: bits };
}

/** One digit's latents against its level's prior (the server's latent_view). */
function latentView(model, k, level, symbols) {
  const table = model.tables[level];
  const D = model.dims;
  const n = table.width + 1;
  const first = symbols.component * D;
  const gains = model.gains ? model.gains.subarray(level * D, (level + 1) * D) : new Float32Array(D).fill(1);
  const round6 = (v) => Math.round(v * 1e6) / 1e6;
  const latents = { values: [], k: [], bits: [], step: [], component: symbols.component, prior_values: [], prior_probs: [] };
  latents.component_bits = model.components > 1 ? model.componentBits[symbols.component] : 0;
  let info = latents.component_bits;
  for (let i = 0; i < D; i++) {
    const row = first + i;
    const offset = table.offsets[row];
    const kk = Number(k[i]);
    const bits = table.bits[row * n + symbols.columns[i]];
    info += bits + (symbols.columns[i] === table.width ? Math.log2(130) + overflowBits(kk) : 0);
    latents.values.push((kk + offset) / gains[i]);
    latents.k.push(kk);
    latents.bits.push(bits);
    latents.step.push(1 / gains[i]);
    const values = [];
    const probs = [];
    for (let j = 0; j < table.width; j++) {
      values.push(round6((table.lower[row] + j + offset) / gains[i]));
      probs.push(round6(table.counts[row * n + j] / 2 ** model.precision));
    }
    latents.prior_values.push(values);
    latents.prior_probs.push(probs);
  }
  return { latents, info };
}

function overflowBits(k) {
  const z = k >= 0 ? 2 * k : -2 * k - 1;
  return Math.floor(Math.log2(z + 1));
}

// -- images --------------------------------------------------------------------------------

async function decodeImage(bytes) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]));
  } catch {
    throw new MnistCodecError("InputError", "the image is not an image this browser reads");
  }
  const canvas = makeCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

function makeCanvas(width, height) {
  if (typeof document === "undefined") return new OffscreenCanvas(width, height);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

/** An exact 28x28 greyscale image, taken as it is (fit=false). */
function exact(rgba) {
  if (rgba.width !== 28 || rgba.height !== 28) throw new MnistCodecError("InputError", `the image is ${rgba.width}x${rgba.height}; without fitting it must be 28x28`);
  const out = new Uint8Array(784);
  for (let i = 0; i < 784; i++) out[i] = rgba.data[4 * i];
  return out;
}

/**
 * An RGBA image brought to MNIST's form, the steps of mnistcodec.storage.fitting: greyscale
 * (transparent pixels become paper), light ink on black, background removed, cropped,
 * scaled so the longer side is 20 pixels (Lanczos), centred by mass in 28x28.
 */
export function fitToMnist(data, width, height) {
  const n = width * height;
  let grey = new Float64Array(n);
  let alphaSum = 0;
  let inkSum = 0;
  let opaque = true;
  for (let i = 0; i < n; i++) {
    const luma = Math.round((data[4 * i] * 299 + data[4 * i + 1] * 587 + data[4 * i + 2] * 114) / 1000);
    const alpha = data[4 * i + 3] / 255;
    if (alpha < 1) opaque = false;
    grey[i] = luma;
    alphaSum += alpha;
    inkSum += luma * alpha;
  }
  if (!opaque) {
    const paper = (alphaSum > 0 ? inkSum / alphaSum : 0) < 128 ? 255 : 0;
    for (let i = 0; i < n; i++) {
      const alpha = data[4 * i + 3] / 255;
      grey[i] = grey[i] * alpha + paper * (1 - alpha);
    }
  }
  const frame = [];
  for (let x = 0; x < width; x++) frame.push(grey[x], grey[(height - 1) * width + x]);
  for (let y = 1; y < height - 1; y++) frame.push(grey[y * width], grey[y * width + width - 1]);
  frame.sort((a, b) => a - b);
  const mid = frame.length >> 1;
  let background = frame.length % 2 ? frame[mid] : (frame[mid - 1] + frame[mid]) / 2;
  if (background > 127.5) {
    grey = grey.map((v) => 255 - v);
    background = 255 - background;
  }
  let peak = 0;
  for (const v of grey) peak = Math.max(peak, v);
  if (peak - background < 1) throw new MnistCodecError("InputError", "the image holds no ink: it is one flat level");
  const spread = frame[frame.length - 1] - frame[0];
  const level = grey.map((v) => {
    let t = Math.min(1, Math.max(0, (v - background) / (peak - background)));
    if (spread > FLAT_FRAME) t = Math.min(1, Math.max(0, (t - INK_FLOOR) / (1 - INK_FLOOR)));
    return t;
  });
  let top = height;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (level[y * width + x] > 0) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) throw new MnistCodecError("InputError", "the image holds no ink above its background");
  const ch = bottom - top + 1;
  const cw = right - left + 1;
  const crop = new Float64Array(ch * cw);
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = Math.round(level[(top + y) * width + left + x] * 255);
  const scale = BOX / Math.max(ch, cw);
  const ow = Math.max(1, pyRound(cw * scale));
  const oh = Math.max(1, pyRound(ch * scale));
  const box = resizeLanczos(crop, cw, ch, ow, oh);
  let total = 0;
  let cy = 0;
  let cx = 0;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const m = box[y * ow + x];
      total += m;
      cy += m * y;
      cx += m * x;
    }
  }
  if (total > 0) [cy, cx] = [cy / total, cx / total];
  else [cy, cx] = [(oh - 1) / 2, (ow - 1) / 2];
  const row0 = Math.min(Math.max(pyRound(14 - cy), 0), 28 - oh);
  const col0 = Math.min(Math.max(pyRound(14 - cx), 0), 28 - ow);
  const out = new Uint8Array(784);
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) out[(row0 + y) * 28 + col0 + x] = box[y * ow + x];
  return out;
}

/** Python's round(): halves to even. */
function pyRound(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const sinc = (x) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
const lanczos = (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

/** Pillow's separable Lanczos resize (horizontal pass, then vertical), 8-bit between passes. */
function resizeLanczos(src, w, h, ow, oh) {
  const pass = (input, inSize, outSize, lines, stride, step) => {
    const out = new Float64Array(lines * outSize);
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = 3 * filterScale;
    for (let o = 0; o < outSize; o++) {
      const centre = (o + 0.5) * scale;
      const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
      const hi = Math.min(Math.trunc(centre + support + 0.5), inSize);
      const weights = [];
      let sum = 0;
      for (let i = lo; i < hi; i++) {
        const wgt = lanczos((i - centre + 0.5) / filterScale);
        weights.push(wgt);
        sum += wgt;
      }
      for (let line = 0; line < lines; line++) {
        let acc = 0;
        for (let i = lo; i < hi; i++) acc += input[line * stride + i * step] * (weights[i - lo] / (sum || 1));
        out[line * outSize + o] = Math.min(255, Math.max(0, Math.round(acc)));
      }
    }
    return out;
  };
  const horizontal = ow === w ? src : pass(src, w, ow, h, w, 1);
  if (oh === h) return Uint8Array.from(horizontal);
  const vertical = pass(horizontal, h, oh, ow, 1, ow); // lines are columns, stored transposed
  const out = new Uint8Array(ow * oh);
  for (let x = 0; x < ow; x++) for (let y = 0; y < oh; y++) out[y * ow + x] = vertical[x * oh + y];
  return out;
}

/** Digits tiled row by row, 2 pixels of grey 128 apart (the server's png_grid). */
function grid(images, n) {
  const columns = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / columns);
  const width = columns * 30 - 2;
  const height = rows * 30 - 2;
  const out = new Uint8Array(width * height).fill(128);
  for (let d = 0; d < n; d++) {
    const r = Math.floor(d / columns);
    const c = d % columns;
    for (let y = 0; y < 28; y++) out.set(images.subarray(784 * d + 28 * y, 784 * d + 28 * y + 28), (r * 30 + y) * width + c * 30);
  }
  return { pixels: out, width, height };
}

function greyCanvas(pixels, width, height) {
  const canvas = makeCanvas(width, height);
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = pixels[i];
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function pngBase64(pixels, width, height) {
  return greyCanvas(pixels, width, height).toDataURL("image/png").split(",")[1];
}

function gridBase64({ pixels, width, height }) {
  return pngBase64(pixels, width, height);
}

async function pngBlob({ pixels, width, height }) {
  const canvas = greyCanvas(pixels, width, height);
  if (canvas.convertToBlob) return canvas.convertToBlob({ type: "image/png" });
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}
