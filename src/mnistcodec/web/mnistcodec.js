// mnistcodec.js: the .mnc and model-file formats of mnistcodec, a second implementation in
// JavaScript (ES module, no build step, no dependency; current browsers and Node 20).
//
// Written from docs/mnc-format.md and docs/model-format.md:
//   - the range coder in exact integers (BigInt state, 24-bit models, 32-bit words), the
//     overflow code, per-digit strings (version 3: shortest bit strings; versions 1 and 2:
//     shortest byte prefixes, read and checked) and streams;
//   - the .mnc container, versions 1 to 3, with every check of the spec's table;
//   - the model file (safetensors + JSON record, format versions 1 and 2), its fingerprint and
//     content hash;
//   - the analysis and synthesis transforms in float32 (own kernels): fixed-rate models,
//     variable-rate models with gains, mixture priors coded by component, conditioned
//     decoders; codebook levels (format version 2: a digit is one codeword index, decoded by
//     table lookup).
//
//   import { loadModel, inspect, MnistCodecError } from "./mnistcodec.js";
//   const model = await loadModel("model.safetensors");   // URL, path (Node) or bytes
//   const mnc = model.compress(images, { level: 7 });       // Uint8Array (N*784) -> .mnc bytes
//   const { images, levels } = model.decompress(mnc);
//
// Run by Node it is also a small command line: `node mnistcodec.js help`.
// docs/javascript.md documents the API.

export const VERSION = "1";

// -- errors ------------------------------------------------------------------------------------

/** The one error class: `kind` names the case as the Python library's class names do. */
export class MnistCodecError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "MnistCodecError";
    this.kind = kind;
  }
}

const fail = (kind, message) => {
  throw new MnistCodecError(kind, message);
};

// -- small helpers -----------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (zlib / PNG) of bytes[start, end). */
export function crc32(bytes, start = 0, end = bytes.length) {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const SHA_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256, incremental (pure JavaScript: crypto.subtle is missing on plain-http pages). */
export class Sha256 {
  constructor() {
    this.h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this.buffer = new Uint8Array(64);
    this.filled = 0;
    this.length = 0;
    this.w = new Uint32Array(64);
  }

  update(bytes) {
    if (typeof bytes === "string") bytes = new TextEncoder().encode(bytes);
    let i = 0;
    this.length += bytes.length;
    if (this.filled) {
      const take = Math.min(64 - this.filled, bytes.length);
      this.buffer.set(bytes.subarray(0, take), this.filled);
      this.filled += take;
      i = take;
      if (this.filled < 64) return this;
      this.block(this.buffer, 0);
      this.filled = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this.block(bytes, i);
    if (i < bytes.length) {
      this.buffer.set(bytes.subarray(i), 0);
      this.filled = bytes.length - i;
    }
    return this;
  }

  block(p, o) {
    const w = this.w;
    const h = this.h;
    for (let t = 0; t < 16; t++) {
      w[t] = (p[o + 4 * t] << 24) | (p[o + 4 * t + 1] << 16) | (p[o + 4 * t + 2] << 8) | p[o + 4 * t + 3];
    }
    for (let t = 16; t < 64; t++) {
      const a = w[t - 15];
      const b = w[t - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + SHA_K[t] + w[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }

  digest() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.filled < 56 ? 56 : 120) - this.filled) + 8);
    pad[0] = 0x80;
    const hi = Math.floor(bits / 2 ** 32);
    const tail = pad.length - 8;
    pad[tail] = hi >>> 24;
    pad[tail + 1] = hi >>> 16;
    pad[tail + 2] = hi >>> 8;
    pad[tail + 3] = hi;
    pad[tail + 4] = bits >>> 24;
    pad[tail + 5] = bits >>> 16;
    pad[tail + 6] = bits >>> 8;
    pad[tail + 7] = bits;
    this.update(pad);
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      out[4 * i] = this.h[i] >>> 24;
      out[4 * i + 1] = this.h[i] >>> 16;
      out[4 * i + 2] = this.h[i] >>> 8;
      out[4 * i + 3] = this.h[i];
    }
    return out;
  }
}

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

const bitLength = (n) => (n === 0n ? 0 : n.toString(2).length);

/** Round half to even (float32 and torch.round's rule). */
function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Float16 bits to a number (exact). */
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// -- JSON as Python writes it (for the content hash) -----------------------------------------

/** A number kept as its literal text, so that `2000.0` stays `2000.0`. */
class RawNumber {
  constructor(text) {
    this.text = text;
  }
}

/** JSON.parse that keeps numbers as RawNumber (Python's NaN and Infinity included). */
function parseRawJson(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const out = new Map();
      ws();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        ws();
        const key = string();
        ws();
        if (text[i++] !== ":") throw new Error("bad JSON object");
        out.set(key, value());
        ws();
        const d = text[i++];
        if (d === "}") return out;
        if (d !== ",") throw new Error("bad JSON object");
      }
    }
    if (c === "[") {
      i++;
      const out = [];
      ws();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value());
        ws();
        const d = text[i++];
        if (d === "]") return out;
        if (d !== ",") throw new Error("bad JSON array");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    const m = /^(-?Infinity|NaN|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!m) throw new Error(`bad JSON at ${i}`);
    i += m[0].length;
    return new RawNumber(m[0]);
  };
  const string = () => {
    if (text[i] !== '"') throw new Error("bad JSON string");
    const start = i;
    i++;
    while (text[i] !== '"') {
      if (text[i] === "\\") i++;
      i++;
      if (i >= text.length) throw new Error("bad JSON string");
    }
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const out = value();
  ws();
  if (i !== text.length) throw new Error("trailing JSON text");
  return out;
}

/** A RawNumber tree as plain JavaScript values. */
function plainJson(v) {
  if (v instanceof RawNumber) return Number(v.text);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plainJson(x)]));
  if (Array.isArray(v)) return v.map(plainJson);
  return v;
}

/** Python's json.dumps(v, sort_keys=True, separators=(",", ":")) (ensure_ascii). */
function pythonJson(v) {
  if (v instanceof RawNumber) return v.text;
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fail("ModelFileError", "unexpected float");
  if (typeof v === "string") {
    let out = '"';
    for (const ch of v) {
      const code = ch.codePointAt(0);
      if (ch === '"') out += '\\"';
      else if (ch === "\\") out += "\\\\";
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (ch === "\b") out += "\\b";
      else if (ch === "\f") out += "\\f";
      else if (code >= 0x20 && code <= 0x7e) out += ch;
      else {
        for (let j = 0; j < ch.length; j++) out += "\\u" + ch.charCodeAt(j).toString(16).padStart(4, "0");
      }
    }
    return out + '"';
  }
  if (Array.isArray(v)) return "[" + v.map(pythonJson).join(",") + "]";
  const entries = v instanceof Map ? [...v] : Object.entries(v);
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return "{" + entries.map(([k, x]) => pythonJson(k) + ":" + pythonJson(x)).join(",") + "}";
}

// -- coded models ------------------------------------------------------------------------------

const MODEL_BITS = 24;
const TOTAL = 1 << MODEL_BITS;
const EXPONENTS = 130;
const CHUNK_BITS = 16;
const B24 = 24n;
const B32 = 32n;
const WORD = 1n << 32n;
const STATE = 1n << 64n;
const STATE_MAX = STATE - 1n;

/**
 * The coded model of a table: `left[j] = floor(C[j] (2^24 - n) / 2^prec) + j`, `left[n] = 2^24`.
 * `counts` holds `rows` rows of `n` counts; returns rows of `n + 1` cumulative weights.
 */
function codedRows(counts, rows, n, precision) {
  const left = new Uint32Array(rows * (n + 1));
  const spread = TOTAL - n;
  const denominator = 2 ** precision;
  for (let r = 0; r < rows; r++) {
    let cumulative = 0;
    const base = r * (n + 1);
    for (let j = 0; j < n; j++) {
      left[base + j] = Math.floor((cumulative * spread) / denominator) + j;
      cumulative += counts[r * n + j];
    }
    left[base + n] = TOTAL;
  }
  return left;
}

/** constriction's Uniform(size): `2^24 // size` each, the last symbol takes the rest. */
function uniformModel(size) {
  const left = new Uint32Array(size + 1);
  const per = Math.floor(TOTAL / size);
  for (let s = 0; s < size; s++) left[s] = s * per;
  left[size] = TOTAL;
  return left;
}

const EXPONENT_MODEL = uniformModel(EXPONENTS);
const CHUNK_MODELS = Array.from({ length: CHUNK_BITS + 1 }, (_, b) => (b ? uniformModel(1 << b) : null));

// -- the range coder in exact integers -------------------------------------------------------

/**
 * constriction's range encoder stated with unbounded integers: `low` is held as emitted 32-bit
 * words (with carries propagated into them) followed by a 64-bit `lower`.
 */
class Encoder {
  constructor() {
    this.words = [];
    this.lower = 0n;
    this.range = STATE_MAX;
    this.empty = true;
  }

  encode(left, base, symbol) {
    const l = left[base + symbol];
    const w = left[base + symbol + 1] - l;
    const scale = this.range >> B24;
    this.lower += scale * BigInt(l);
    this.range = scale * BigInt(w);
    this.empty = false;
    if (this.lower >= STATE) {
      this.lower -= STATE;
      carry(this.words);
    }
    if (this.range < WORD) {
      this.words.push(Number(this.lower >> B32));
      this.lower = (this.lower & 0xffffffffn) << B32;
      this.range <<= B32;
    }
  }

  encodeOverflow(value) {
    const k = BigInt(value);
    const m = (k >= 0n ? 2n * k : -2n * k - 1n) + 1n;
    const n = bitLength(m) - 1;
    this.encode(EXPONENT_MODEL, 0, n);
    let remaining = n;
    while (remaining > 0) {
      const bits = Math.min(CHUNK_BITS, remaining);
      remaining -= bits;
      this.encode(CHUNK_MODELS[bits], 0, Number((m >> BigInt(remaining)) & ((1n << BigInt(bits)) - 1n)));
    }
  }

  /** The interval [low, low + range) on the grid of G = 64 + 32 s bits. */
  interval() {
    let low = 0n;
    for (const w of this.words) low = (low << B32) | BigInt(w);
    return { low: (low << 64n) | this.lower, range: this.range, grid: 64 + 32 * this.words.length };
  }

  /** constriction's get_compressed(), as big-endian bytes. */
  sealed() {
    if (this.empty) return new Uint8Array(0);
    const words = this.words.slice();
    let top = (this.lower + WORD - 1n) >> B32;
    const extra = (this.lower + this.range) >> B32 === top;
    if (top >= WORD) {
      top -= WORD;
      carry(words);
    }
    words.push(Number(top));
    if (extra) words.push(0);
    const out = new Uint8Array(4 * words.length);
    words.forEach((w, i) => {
      out[4 * i] = w >>> 24;
      out[4 * i + 1] = w >>> 16;
      out[4 * i + 2] = w >>> 8;
      out[4 * i + 3] = w;
    });
    return out;
  }
}

function carry(words) {
  for (let i = words.length - 1; i >= 0; i--) {
    words[i] = (words[i] + 1) >>> 0;
    if (words[i] !== 0) return;
  }
  throw new Error("range coder carry past the first word");
}

/** The range decoder, on bytes[start, end) padded with zero bytes without end. */
class Decoder {
  constructor(bytes, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
    this.diff = (this.word() << B32) | this.word(); // point - low
    this.range = STATE_MAX;
  }

  word() {
    let w = 0;
    for (let i = 0; i < 4; i++) {
      w = w * 256 + (this.pos < this.end ? this.bytes[this.pos] : 0);
      this.pos++;
    }
    return BigInt(w);
  }

  decode(left, base, size) {
    const scale = this.range >> B24;
    const q = this.diff / scale;
    if (q >= 16777216n) throw new MnistCodecError("DecodeError", "invalid data: the point lies past the last symbol");
    const quantile = Number(q);
    let lo = 0;
    let hi = size; // left[base + lo] <= quantile < left[base + hi]
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (left[base + mid] <= quantile) lo = mid;
      else hi = mid;
    }
    const l = left[base + lo];
    this.diff -= scale * BigInt(l);
    this.range = scale * BigInt(left[base + lo + 1] - l);
    if (this.range < WORD) {
      this.diff = (this.diff << B32) | this.word();
      this.range <<= B32;
    }
    return lo;
  }

  decodeOverflow() {
    const n = this.decode(EXPONENT_MODEL, 0, EXPONENTS);
    let m = 1n;
    let remaining = n;
    while (remaining > 0) {
      const bits = Math.min(CHUNK_BITS, remaining);
      remaining -= bits;
      m = (m << BigInt(bits)) | BigInt(this.decode(CHUNK_MODELS[bits], 0, 1 << bits));
    }
    const z = m - 1n;
    const k = z % 2n === 0n ? z / 2n : -(z + 1n) / 2n;
    return k >= -BigInt(Number.MAX_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(k) : k;
  }
}

/** Version 3: the shortest bit string whose zero-padded value lies in the final interval. */
function shortestBits(encoder) {
  const { low, range, grid } = encoder.interval();
  const a = low;
  const b = low + range - 1n;
  let p;
  if (a === 0n || a === b) p = a;
  else {
    const t = BigInt(bitLength(a ^ b) - 1);
    p = a % (1n << (t + 1n)) === 0n ? a : (b >> t) << t;
  }
  if (p === 0n) return { bits: 0, bytes: new Uint8Array(0) };
  let z = 0;
  while (((p >> BigInt(z)) & 1n) === 0n) z++;
  const nbits = grid - z;
  const nbytes = Math.ceil(nbits / 8);
  const value = (p >> BigInt(z)) << BigInt(8 * nbytes - nbits);
  return { bits: nbits, bytes: bigToBytes(value, nbytes) };
}

function bigToBytes(value, n) {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

function bytesToBig(bytes, start = 0, end = bytes.length) {
  let v = 0n;
  for (let i = start; i < end; i++) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

function stripZeros(bytes) {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return bytes.subarray(0, end);
}

/** Versions 1 and 2: the shortest prefix of the sealed output that decodes (start: floor(I/8)-1). */
function shortestPrefix(encoder, start) {
  const full = stripZeros(encoder.sealed());
  const { low, range, grid } = encoder.interval();
  for (let length = start; length < full.length; length++) {
    let v = bytesToBig(full, 0, length);
    const shift = BigInt(grid - 8 * length);
    if (v << shift >= low) return stripZeros(full.slice(0, length));
    v += 1n;
    if (length && v < 1n << BigInt(8 * length) && v << shift < low + range) {
      return stripZeros(bigToBytes(v, length));
    }
  }
  return full;
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// -- model files -------------------------------------------------------------------------------

const MAX_MODEL_BYTES = 2 ** 30;
const MAX_HEADER = 16 * 2 ** 20;
const LEVEL_LAYERS = { fc_1: 500, fc_2: 50, conv_1: 20 };
const VR_LEVELS = 16;
const DTYPE_SIZES = { F32: 4, F16: 2, I32: 4, U16: 2, U8: 1 };
const TORCH_NAMES = { F32: "float32", F16: "float16", I32: "int32", U16: "uint16", U8: "uint8" };
const MODEL_VERSIONS = [1, 2];
const CODEBOOK_KEY = "codebook_levels";
const MAX_CODEWORDS = 4096;
const pixelsName = (level) => `codebook.level.${level}.pixels`;

/** A record value that Python's json reads as an int (not a float, not a bool), else null. */
const rawInt = (v) => (v instanceof RawNumber && /^-?\d+$/.test(v.text) ? Number(v.text) : null);

/** Read a model file: bytes (Uint8Array / ArrayBuffer), a URL, or (Node) a path. */
export async function loadModel(source) {
  if (source instanceof ArrayBuffer) return new Model(new Uint8Array(source));
  if (ArrayBuffer.isView(source)) return new Model(new Uint8Array(source.buffer, source.byteOffset, source.byteLength));
  return new Model(await readSource(source, "model file"));
}

async function readSource(source, what) {
  const text = String(source);
  const isNode = typeof process !== "undefined" && process.versions && process.versions.node;
  if (isNode && !/^(https?|data|blob):/.test(text)) {
    const fs = await import("node:fs/promises");
    const path = text.startsWith("file:") ? new URL(text) : text;
    let stat;
    try {
      stat = await fs.stat(path);
    } catch {
      fail(what === "model file" ? "ModelFileError" : "InputError", `no ${what} ${text}`);
    }
    if (stat.isDirectory()) fail(what === "model file" ? "ModelFileError" : "InputError", `${text} is a directory, not a ${what}`);
    return new Uint8Array(await fs.readFile(path));
  }
  let response;
  try {
    response = await fetch(source);
  } catch (err) {
    fail(what === "model file" ? "ModelFileError" : "InputError", `could not fetch ${what} ${text}: ${err.message}`);
  }
  if (!response.ok) fail(what === "model file" ? "ModelFileError" : "InputError", `could not fetch ${what} ${text}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** A model file read and checked: coding tables, transforms, and the codec's methods. */
export class Model {
  constructor(data) {
    const bad = (message) => fail("ModelFileError", message);
    if (data.length > MAX_MODEL_BYTES) bad(`model file is ${data.length} bytes, more than 1 GiB`);
    if (data.length < 8) bad("not a model file: too short for a safetensors header");
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const headerLength = Number(view.getBigUint64(0, true));
    if (headerLength > MAX_HEADER || 8 + headerLength > data.length) bad("not a model file: bad safetensors header length");
    let header;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data.subarray(8, 8 + headerLength)));
    } catch {
      bad("not a model file: its safetensors header is not JSON");
    }
    const metadata = header.__metadata__;
    if (!metadata || typeof metadata.mnistcodec !== "string") bad("not an mnistcodec model (no mnistcodec record)");
    let raw;
    try {
      raw = parseRawJson(metadata.mnistcodec);
    } catch {
      bad("not an mnistcodec model: its record is not JSON");
    }
    const record = plainJson(raw);
    if (record.format !== "mnistcodec-model") bad("not an mnistcodec model file");
    const version = rawInt(raw.get("format_version"));
    if (!MODEL_VERSIONS.includes(version)) {
      const given = raw.get("format_version");
      bad(`model format version ${given instanceof RawNumber ? given.text : JSON.stringify(record.format_version) ?? "missing"}; this library reads versions ${MODEL_VERSIONS.join(" and ")}`);
    }
    this.formatVersion = version;
    const config = record.config || {};
    this.data = data;
    this.header = header;
    this.record = record;
    this.config = config;
    this.dataStart = 8 + headerLength;
    const dims = config.latent_dims;
    if (!Number.isInteger(dims) || dims < 1 || dims > 65536) bad(`invalid configuration: latent_dims ${dims}`);
    if (config.arch !== "seed" && config.arch !== "vr") bad(`unknown architecture ${JSON.stringify(config.arch)}`);
    const precision = record.coding && record.coding.precision;
    if (!Number.isInteger(precision) || precision < 1 || precision > 24) bad(`invalid coding precision ${precision}`);
    this.dims = dims;
    this.precision = precision;
    this.variableRate = config.arch === "vr";
    this.components = this.variableRate ? config.mixture_components ?? 1 : 1;
    if (!Number.isInteger(this.components) || this.components < 1 || this.components > 256) bad(`invalid mixture_components ${this.components}`);
    this.conditioned = this.variableRate && config.conditioned_decoder === true;
    if (this.variableRate) {
      // The format fixes the levels of arch "vr": 16, the record lists their lambdas.
      if (!Array.isArray(record.levels) || record.levels.length !== VR_LEVELS) bad(`a variable-rate model has ${VR_LEVELS} levels; its record lists ${Array.isArray(record.levels) ? record.levels.length : "none"}`);
      this.lambdas = record.levels.map(Number);
    } else {
      this.lambdas = [Number(config.lmbda)];
    }
    this.levels = this.lambdas.length;
    this.fingerprint = record.fingerprint;
    /** Codebook levels (format version 2), ascending: a digit there is one codeword index. */
    this.codebookLevels = this.readCodebookLevels(raw, version);
    this.checkTensorNames();
    const coding = new Set(
      [...Array(this.variableRate ? this.levels : 1).keys()]
        .map((l) => (this.variableRate ? `coding.level.${l}.` : "coding."))
        .concat(this.components > 1 ? ["coding.components."] : [])
        .flatMap((prefix) => ["counts", "lower", "offsets"].map((key) => prefix + key))
        .concat(this.codebookLevels.map(pixelsName)),
    );
    for (const name of Object.keys(this.header)) {
      if (name === "__metadata__" || coding.has(name)) continue;
      if (!/^model\.(synthesis_transform|analysis_transform|entropy_bottleneck)\./.test(name)) bad(`unexpected tensor ${name}`);
    }
    this.tables = [];
    /** Level -> `{size, pixels (size * 784 uint8), norms}` for each codebook level. */
    this.codebooks = new Map();
    for (let level = 0; level < this.levels; level++) {
      const prefix = this.variableRate ? `coding.level.${level}.` : "coding.";
      if (this.codebookLevels.includes(level)) {
        const book = this.readCodebook(level);
        const table = this.readCodebookTable(prefix, book.size, level);
        this.codebooks.set(level, book);
        this.tables.push(table);
      } else this.tables.push(this.readTable(prefix, this.components * dims));
    }
    if (this.components > 1) {
      const table = this.readTable("coding.components.", 1);
      if (table.width !== this.components) bad(`the component table has ${table.width} columns for ${this.components} components`);
      this.componentTable = table;
      this.componentBits = Array.from(table.counts.subarray(0, this.components), (c) => precision - Math.log2(c));
    }
    this.checkFingerprint(raw);
    this.readWeights();
    this.referenceLevel = this.variableRate ? nearestLevel(Number(config.lmbda), this.lambdas) : 0;
    this.tables.forEach((table, level) => (table.minBits = this.minDigitBits(table, level)));
  }

  /** The record's codebook levels: none in version 1; in version 2 distinct, ascending, not all. */
  readCodebookLevels(raw, version) {
    const L = this.levels;
    if (version === 1) {
      if (raw.has(CODEBOOK_KEY)) fail("ModelFileError", `${CODEBOOK_KEY} needs model format version 2, the file says version 1`);
      return [];
    }
    const value = raw.get(CODEBOOK_KEY);
    const levels = Array.isArray(value) ? value.map(rawInt) : null;
    if (
      !levels ||
      !levels.length ||
      levels.some((l, i) => l === null || l < 0 || l >= L || (i > 0 && l <= levels[i - 1])) ||
      levels.length >= L
    ) {
      const shown = value === undefined ? "[]" : JSON.stringify(plainJson(value)).replace(/,/g, ", ").slice(0, 60);
      fail("ModelFileError", `${CODEBOOK_KEY} must list distinct levels from 0 to ${L - 1} in ascending order, leaving at least one level to the network; got ${shown}`);
    }
    if (!this.variableRate) fail("ModelFileError", "only a variable-rate model may have codebook levels");
    return levels;
  }

  /** A codebook level's codewords: `codebook.level.<l>.pixels`, U8 (K, 28, 28), 1 <= K <= 4096. */
  readCodebook(level) {
    const name = pixelsName(level);
    const entry = this.header[name];
    if (!entry) fail("ModelFileError", `missing tensor ${name}`);
    const shape = entry.shape;
    if (entry.dtype !== "U8" || shape.length !== 3 || shape[1] !== 28 || shape[2] !== 28 || !(shape[0] >= 1 && shape[0] <= MAX_CODEWORDS)) {
      const dtype = TORCH_NAMES[entry.dtype] ?? entry.dtype;
      const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
      fail("ModelFileError", `tensor ${name} is ${dtype} ${tuple}, expected uint8 (K, 28, 28) with K from 1 to ${MAX_CODEWORDS}`);
    }
    const { values } = this.tensor(name, null, ["U8"]);
    const size = shape[0];
    // ||c_i||^2 in integers: the nearest codeword is argmin ||c_i||^2 - 2 x.c_i, exact.
    const norms = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      let s = 0;
      for (let j = 784 * i; j < 784 * (i + 1); j++) s += values[j] * values[j];
      norms[i] = s;
    }
    return { size, pixels: values, norms };
  }

  /** A codebook level's table: one row of K counts and the escape, lower 0 and offset 0. */
  readCodebookTable(prefix, size, level) {
    const problem = () => fail("ModelFileError", `level ${level}'s table must be one row of ${size} counts and the escape, lower 0 and offset 0`);
    const shapes = [
      ["counts", [1, size + 1]],
      ["lower", [1]],
      ["offsets", [1]],
    ];
    for (const [key, shape] of shapes) {
      const entry = this.header[prefix + key];
      if (entry && (entry.shape.length !== shape.length || entry.shape.some((v, i) => v !== shape[i]))) problem();
    }
    const table = this.readTable(prefix, 1);
    if (table.lower[0] !== 0 || table.offsets[0] !== 0) problem();
    return table;
  }

  /** Whether digits at `level` are codeword indices (a codebook level). */
  isCodebookLevel(level) {
    return this.codebooks.has(level);
  }

  checkTensorNames() {
    const names = Object.keys(this.header).filter((k) => k !== "__metadata__");
    for (const name of names) {
      const entry = this.header[name];
      const size = DTYPE_SIZES[entry.dtype];
      if (!size) fail("ModelFileError", `tensor ${name} has dtype ${entry.dtype}; expected F32, F16, I32, U16 or U8`);
      const [start, end] = entry.data_offsets;
      const count = entry.shape.reduce((a, b) => a * b, 1);
      if (!(start >= 0 && end >= start && this.dataStart + end <= this.data.length && end - start === count * size)) {
        fail("ModelFileError", `tensor ${name} does not fit the file`);
      }
    }
  }

  tensor(name, shape, dtypes) {
    const entry = this.header[name];
    if (!entry) fail("ModelFileError", `missing tensor ${name}`);
    if (!dtypes.includes(entry.dtype)) fail("ModelFileError", `tensor ${name} has dtype ${entry.dtype}; expected ${dtypes.join(" or ")}`);
    if (shape && (entry.shape.length !== shape.length || entry.shape.some((v, i) => shape[i] !== null && v !== shape[i]))) {
      fail("ModelFileError", `tensor ${name} has shape [${entry.shape}], expected [${shape.map((v) => v ?? "*")}]`);
    }
    const [start, end] = entry.data_offsets;
    const bytes = this.data.slice(this.dataStart + start, this.dataStart + end);
    const view = new DataView(bytes.buffer);
    const n = entry.shape.reduce((a, b) => a * b, 1);
    let values;
    if (entry.dtype === "F32") {
      values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = view.getFloat32(4 * i, true);
    } else if (entry.dtype === "F16") {
      values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = halfToFloat(view.getUint16(2 * i, true));
    } else if (entry.dtype === "I32") {
      values = new Int32Array(n);
      for (let i = 0; i < n; i++) values[i] = view.getInt32(4 * i, true);
    } else if (entry.dtype === "U16") {
      values = new Int32Array(n);
      for (let i = 0; i < n; i++) values[i] = view.getUint16(2 * i, true);
    } else values = bytes;
    return { values, shape: entry.shape, dtype: entry.dtype, bytes };
  }

  readTable(prefix, rows) {
    const counts = this.tensor(prefix + "counts", [rows, null], ["I32", "U16"]);
    const lower = this.tensor(prefix + "lower", [rows], ["I32"]);
    const offsets = this.tensor(prefix + "offsets", [rows], ["F32"]);
    const n = counts.shape[1];
    if (n < 2) fail("ModelFileError", `coding table ${prefix}counts has invalid shape [${counts.shape}]`);
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let j = 0; j < n; j++) {
        const c = counts.values[r * n + j];
        if (c < 1) fail("ModelFileError", `invalid coding table ${prefix}counts: a count is not positive`);
        sum += c;
      }
      if (sum !== 2 ** this.precision) fail("ModelFileError", `invalid coding table ${prefix}counts: row ${r} sums to ${sum}, not 2^${this.precision}`);
    }
    if (!offsets.values.every(Number.isFinite)) fail("ModelFileError", `invalid coding table ${prefix}offsets: non-finite offsets`);
    const bits = new Float64Array(rows * n);
    for (let i = 0; i < bits.length; i++) bits[i] = this.precision - Math.log2(counts.values[i]);
    return {
      prefix,
      rows,
      width: n - 1,
      counts: counts.values,
      lower: lower.values,
      offsets: offsets.values,
      left: codedRows(counts.values, rows, n, this.precision),
      bits,
      stored: [counts, lower, offsets],
    };
  }

  checkFingerprint(raw) {
    const head = [`"arch": ${JSON.stringify(this.config.arch)}`, `"latent_dims": ${this.dims}`];
    if (this.components > 1) head.push(`"mixture_components": ${this.components}`);
    head.push(`"precision": ${this.precision}`);
    if (this.codebookLevels.length) head.splice(1, 0, `"${CODEBOOK_KEY}": [${this.codebookLevels.join(", ")}]`);
    const h = new Sha256().update(`{${head.join(", ")}}`);
    const tables = [...this.tables];
    if (this.componentTable) tables.push(this.componentTable);
    for (const table of tables) {
      for (const t of table.stored) {
        if (t.dtype === "U16") {
          const widened = new Uint8Array(t.values.length * 4);
          const view = new DataView(widened.buffer);
          t.values.forEach((v, i) => view.setInt32(4 * i, v, true));
          h.update(widened);
        } else h.update(t.bytes);
      }
    }
    // The decoder's tensors by their hashed names: `model.` stripped; codebook pixels as they are.
    const hashed = (name) => (name.startsWith("model.") ? name.slice(6) : name);
    const names = Object.keys(this.header)
      .filter((k) => k.startsWith("model.synthesis_transform.") || k === "model.entropy_bottleneck.log_gains")
      .concat(this.codebookLevels.map(pixelsName))
      .sort((a, b) => (hashed(a) < hashed(b) ? -1 : hashed(a) > hashed(b) ? 1 : 0));
    const dtypes = { F16: "torch.float16", F32: "torch.float32" };
    for (const name of names) {
      const entry = this.header[name];
      const dtype = name.startsWith("model.") ? dtypes[entry.dtype] : entry.dtype === "U8" && "torch.uint8";
      if (!dtype) fail("ModelFileError", `tensor ${name} has dtype ${entry.dtype}; expected ${name.startsWith("model.") ? "F32 or F16" : "U8"}`);
      h.update(`${hashed(name)}\0${dtype}\0`);
      const [start, end] = entry.data_offsets;
      h.update(this.data.subarray(this.dataStart + start, this.dataStart + end));
    }
    const computed = toHex(h.digest());
    if (computed !== this.record.fingerprint) {
      fail("ModelFileError", `model fingerprint mismatch: the file says ${String(this.record.fingerprint).slice(0, 16)}..., its contents give ${computed.slice(0, 16)}... (corrupt or tampered)`);
    }
    if (this.record.content_sha256 !== undefined) {
      const entries = Object.fromEntries(Object.entries(this.header).filter(([k]) => k !== "__metadata__"));
      const rest = new Map([...raw].filter(([k]) => k !== "content_sha256"));
      const c = new Sha256().update("mnistcodec-content-v1\0");
      c.update(pythonJson(entries) + "\0");
      c.update(pythonJson(rest) + "\0");
      c.update(this.data.subarray(this.dataStart));
      if (toHex(c.digest()) !== this.record.content_sha256) fail("ModelFileError", "model content hash mismatch: the file is corrupt or was tampered with");
    }
  }

  readWeights() {
    const D = this.dims;
    const L = this.levels;
    const f = ["F32", "F16"];
    const w = (part, name, shape) => {
      const t = this.tensor(`model.${part}.${name}`, shape, f).values;
      if (!t.every(Number.isFinite)) fail("ModelFileError", `tensor model.${part}.${name} holds non-finite weights`);
      return t;
    };
    const s = "synthesis_transform";
    this.synthesis = {
      fc1w: w(s, "fc_1.weight", [500, D]),
      fc1b: w(s, "fc_1.bias", [500]),
      fc2w: w(s, "fc_2.weight", [2450, 500]),
      fc2b: w(s, "fc_2.bias", [2450]),
      c1w: gatherWeights(w(s, "conv_1.weight", [50, 20, 5, 5]), 50, 20, true),
      c1b: w(s, "conv_1.bias", [20]),
      c2w: gatherWeights(w(s, "conv_2.weight", [20, 1, 5, 5]), 20, 1, true),
      c2b: w(s, "conv_2.bias", [1]),
    };
    if (this.conditioned) {
      this.synthesis.scales = {};
      this.synthesis.shifts = {};
      for (const [layer, n] of Object.entries(LEVEL_LAYERS)) {
        const scales = w(s, `level_log_scales.${layer}`, [L, n]);
        this.synthesis.scales[layer] = scales.map((v) => Math.fround(Math.exp(v)));
        this.synthesis.shifts[layer] = w(s, `level_shifts.${layer}`, [L, n]);
      }
    }
    const a = "analysis_transform";
    this.analysis = {};
    if (this.header[`model.${a}.fc_2.weight`]) {
      this.analysis = {
        c1w: gatherWeights(w(a, "conv_1.weight", [20, 1, 5, 5]), 1, 20, false),
        c1b: w(a, "conv_1.bias", [20]),
        c2w: gatherWeights(w(a, "conv_2.weight", [50, 20, 5, 5]), 20, 50, false),
        c2b: w(a, "conv_2.bias", [50]),
        fc1w: w(a, "fc_1.weight", [500, 2450]),
        fc1b: w(a, "fc_1.bias", [500]),
        fc2w: w(a, "fc_2.weight", [D, 500]),
        fc2b: w(a, "fc_2.bias", [D]),
      };
    }
    this.gains = null;
    if (this.variableRate) {
      const logGains = w("entropy_bottleneck", "log_gains", [L, D]);
      this.gains = logGains.map((v) => Math.fround(Math.exp(v)));
    }
  }

  /** The fewest bits any digit costs at a level (the stream bound's M). */
  minDigitBits(table, level) {
    const n = table.width + 1;
    const D = this.dims;
    if (this.isCodebookLevel(level)) return this.precision - Math.log2(Math.max(...table.counts));
    let best = Infinity;
    for (let c = 0; c < this.components; c++) {
      let sum = this.components > 1 ? this.componentBits[c] : 0;
      for (let i = 0; i < D; i++) {
        let m = 0;
        for (let j = 0; j < n; j++) m = Math.max(m, table.counts[(c * D + i) * n + j]);
        sum += this.precision - Math.log2(m);
      }
      best = Math.min(best, sum);
    }
    return best;
  }

  /** What a page shows: name, levels, lambdas, fingerprint. */
  describe() {
    return {
      fingerprint: this.fingerprint,
      arch: this.config.arch,
      latentDims: this.dims,
      levels: this.levels,
      lambdas: this.lambdas,
      referenceLevel: this.referenceLevel,
      components: this.components,
      conditionedDecoder: this.conditioned,
      codebookLevels: this.codebookLevels,
      codebookSizes: this.codebookLevels.map((l) => this.codebooks.get(l).size),
      formatVersion: this.formatVersion,
      canEncode: Boolean(this.analysis.fc2w),
    };
  }

  /** The level whose lambda is nearest to `lmbda` on a log scale. */
  levelForLambda(lmbda) {
    return nearestLevel(lmbda, this.lambdas);
  }

  checkLevel(level) {
    if (!Number.isInteger(level) || level < 0 || level >= this.levels) {
      fail("InputError", `level ${level} does not exist; this model has levels 0 to ${this.levels - 1}`);
    }
    return level;
  }

  // -- transforms ------------------------------------------------------------------------------

  /** uint8 digit (784) -> analysis latents y (Float32Array of D). */
  analyse(pixels) {
    return this.analyseMany([pixels])[0];
  }

  /** Several digits at once (the dense layers read each weight row once per batch). */
  analyseMany(digits) {
    const A = this.analysis;
    if (!A.fc2w) fail("InputError", "this model file holds no analysis transform: it can decode but not encode");
    const out = [];
    for (let first = 0; first < digits.length; first += BATCH) {
      const part = digits.slice(first, first + BATCH);
      const h2 = new Float32Array(part.length * 2450);
      part.forEach((pixels, b) => {
        const x = new Float32Array(784);
        for (let i = 0; i < 784; i++) x[i] = pixels[i] / 255;
        h2.set(conv(conv(x, 1, 28, A.c1w, A.c1b, 20), 20, 14, A.c2w, A.c2b, 50), b * 2450);
      });
      const h3 = dense(h2, part.length, A.fc1w, A.fc1b, 500, 2450, true);
      const y = dense(h3, part.length, A.fc2w, A.fc2b, this.dims, 500, false);
      if (!y.every(Number.isFinite)) fail("InputError", "the analysis transform produced non-finite latents");
      for (let b = 0; b < part.length; b++) out.push(y.subarray(b * this.dims, (b + 1) * this.dims));
    }
    return out;
  }

  /** Latents y at a level -> integer latents k: `round(g_l y - o_l)` in float32, halves to even. */
  quantise(y, level) {
    if (this.isCodebookLevel(level)) fail("InputError", `level ${level} is a codebook level: its digits are codeword indices (chooseLatents), not quantised latents`);
    const D = this.dims;
    const table = this.tables[level];
    const k = new Array(D);
    for (let i = 0; i < D; i++) {
      const z = this.gains ? Math.fround(y[i] * this.gains[level * D + i]) : y[i];
      k[i] = roundHalfEven(Math.fround(z - table.offsets[i]));
    }
    return k;
  }

  /**
   * The nearest codeword of a codebook level to a digit: `argmin_i sum (x - c_i)^2` in exact
   * integers (ties: the lowest index), the one mnistcodec sends.
   */
  nearestCodeword(pixels, level) {
    const book = this.codebooks.get(level);
    if (!book) fail("InputError", `level ${level} is not a codebook level`);
    const { size, pixels: words, norms } = book;
    let best = 0;
    let bestScore = Infinity;
    for (let i = 0; i < size; i++) {
      const base = 784 * i;
      let dot = 0;
      for (let j = 0; j < 784; j++) dot += pixels[j] * words[base + j];
      const score = norms[i] - 2 * dot;
      if (score < bestScore) [best, bestScore] = [i, score];
    }
    return best;
  }

  /**
   * The integer latents mnistcodec sends for a digit at a level (Python's `choose_latents`):
   * at a codebook level the nearest codeword's index in column 0 and zeros elsewhere (how
   * this library and Python's hold a codebook digit), otherwise `quantise(analyse(pixels))`
   * (`y`, the analysis latents, if already computed).
   */
  chooseLatents(pixels, level, y = null) {
    this.checkLevel(level);
    if (this.isCodebookLevel(level)) return this.codewordLatents(this.nearestCodeword(pixels, level));
    return this.quantise(y ?? this.analyse(pixels), level);
  }

  /** Several digits at one level: `chooseLatents` with one analysis batch. */
  chooseLatentsMany(digits, level) {
    if (this.isCodebookLevel(level)) return digits.map((pixels) => this.chooseLatents(pixels, level));
    return this.analyseMany(digits).map((y) => this.quantise(y, level));
  }

  codewordLatents(index) {
    const k = new Array(this.dims).fill(0);
    k[0] = index;
    return k;
  }

  /** A decoded codebook digit's index, checked: past the codewords (an escape) the data is corrupt. */
  checkCodeword(k, level) {
    const book = this.codebooks.get(level);
    if (!book) return;
    const index = k[0];
    if (!(typeof index === "number" && index >= 0 && index < book.size)) {
      throw new MnistCodecError("DecodeError", `a codebook digit decodes to index ${index}, but the level has ${book.size} codewords; the data is corrupt`);
    }
  }

  /** Integer latents at a level -> uint8 digit (784): `y^ = (k + o_l) / g_l`, synthesis, round(255 x^). */
  synthesise(k, level) {
    return this.synthesiseMany([k], [level]);
  }

  /**
   * Digits `ks[i]` at `levels[i]` -> uint8 pixels (n * 784): a codebook level's digit is its
   * codeword (index in column 0, clamped into the codebook), the others go through the
   * synthesis transform in batches.
   */
  synthesiseMany(ks, levels) {
    if (!this.codebooks.size) return this.synthesiseNetwork(ks, levels);
    const out = new Uint8Array(ks.length * 784);
    const network = [];
    ks.forEach((k, i) => {
      const book = this.codebooks.get(levels[i]);
      if (!book) return network.push(i);
      const v = Number(k[0]);
      const index = Number.isNaN(v) ? 0 : Math.trunc(Math.min(book.size - 1, Math.max(0, v)));
      out.set(book.pixels.subarray(784 * index, 784 * (index + 1)), 784 * i);
    });
    if (network.length) {
      const decoded = this.synthesiseNetwork(network.map((i) => ks[i]), network.map((i) => levels[i]));
      network.forEach((i, j) => out.set(decoded.subarray(784 * j, 784 * (j + 1)), 784 * i));
    }
    return out;
  }

  /** Digits at network levels -> uint8 pixels (n * 784), through the synthesis transform. */
  synthesiseNetwork(ks, levels) {
    const S = this.synthesis;
    const D = this.dims;
    const out = new Uint8Array(ks.length * 784);
    for (let first = 0; first < ks.length; first += BATCH) {
      const n = Math.min(BATCH, ks.length - first);
      const y = new Float32Array(n * D);
      for (let b = 0; b < n; b++) {
        const k = ks[first + b];
        const level = levels[first + b];
        const table = this.tables[level];
        for (let i = 0; i < D; i++) {
          y[b * D + i] = dequantise(k[i], table.offsets[i], this.gains ? this.gains[level * D + i] : 1);
        }
      }
      const affine = (layer, h, b, per) => affineAt(layer, h, levels[first + b], b, per);
      const affineAt = (layer, h, level, b, per) => {
        if (!this.conditioned) return;
        const units = LEVEL_LAYERS[layer];
        const scale = S.scales[layer];
        const shift = S.shifts[layer];
        const start = b * units * per;
        for (let u = 0; u < units; u++) {
          const a = scale[level * units + u];
          const t = shift[level * units + u];
          for (let j = start + u * per; j < start + (u + 1) * per; j++) h[j] = Math.fround(Math.fround(h[j] * a) + t);
        }
      };
      const h1 = dense(y, n, S.fc1w, S.fc1b, 500, D, false);
      for (let b = 0; b < n; b++) affine("fc_1", h1, b, 1);
      leaky(h1);
      const h2 = dense(h1, n, S.fc2w, S.fc2b, 2450, 500, false);
      for (let b = 0; b < n; b++) affine("fc_2", h2, b, 49);
      leaky(h2);
      for (let b = 0; b < n; b++) {
        const h3 = convTranspose(h2.subarray(b * 2450, (b + 1) * 2450), 50, 7, S.c1w, S.c1b, 20);
        affineAt("conv_1", h3, levels[first + b], 0, 196);
        leaky(h3);
        const h4 = convTranspose(h3, 20, 14, S.c2w, S.c2b, 1);
        leaky(h4);
        const base = (first + b) * 784;
        for (let i = 0; i < 784; i++) {
          const v = roundHalfEven(Math.fround(h4[i] * 255));
          out[base + i] = Number.isNaN(v) ? 0 : Math.max(0, Math.min(255, v));
        }
      }
    }
    return out;
  }

  // -- symbols ---------------------------------------------------------------------------------

  /**
   * A digit's symbols at a level: component (mixtures), table columns, escaped values. At a
   * codebook level one column, the index `k[0]` (no component is coded: `component` null).
   */
  symbols(k, level) {
    const table = this.tables[level];
    const D = this.dims;
    const K = table.width;
    const n = K + 1;
    if (this.isCodebookLevel(level)) {
      const index = k[0];
      const column = typeof index === "number" && Number.isInteger(index) && index >= 0 && index < K ? index : K;
      return { component: null, columns: [column], escaped: column === K ? [index] : [] };
    }
    let component = 0;
    if (this.components > 1) {
      let best = Infinity;
      const parts = new Float64Array(D);
      for (let c = 0; c < this.components; c++) {
        let extra = 0;
        let escapes = false;
        const extras = new Float64Array(D);
        for (let i = 0; i < D; i++) {
          const row = c * D + i;
          const rel = k[i] - table.lower[row];
          const col = typeof rel === "number" && rel >= 0 && rel < K ? rel : K;
          parts[i] = table.bits[row * n + col];
          if (col === K) {
            escapes = true;
            extras[i] = Math.log2(EXPONENTS) + overflowExponent(k[i]);
          }
        }
        let bits = pairwiseSum(parts) + this.componentBits[c];
        if (escapes) extra = pairwiseSum(extras);
        bits += extra;
        if (bits < best) {
          best = bits;
          component = c;
        }
      }
    }
    const columns = new Array(D);
    const escaped = [];
    for (let i = 0; i < D; i++) {
      const row = component * D + i;
      const rel = typeof k[i] === "number" ? k[i] - table.lower[row] : -1;
      columns[i] = rel >= 0 && rel < K ? rel : K;
      if (columns[i] === K) escaped.push(k[i]);
    }
    return { component, columns, escaped };
  }

  encodeSymbols(encoder, s, level) {
    const table = this.tables[level];
    const n = table.width + 2;
    if (this.isCodebookLevel(level)) return encoder.encode(table.left, 0, s.columns[0]);
    if (this.components > 1) encoder.encode(this.componentTable.left, 0, s.component);
    const first = s.component * this.dims;
    for (let i = 0; i < this.dims; i++) encoder.encode(table.left, (first + i) * n, s.columns[i]);
  }

  decodeSymbols(decoder, level) {
    const table = this.tables[level];
    const n = table.width + 2;
    if (this.isCodebookLevel(level)) return { component: null, columns: [decoder.decode(table.left, 0, table.width + 1)] };
    let component = 0;
    if (this.components > 1) {
      component = decoder.decode(this.componentTable.left, 0, this.components + 1);
      if (component >= this.components) {
        throw new MnistCodecError("DecodeError", `component symbol ${component} is not one of ${this.components} components`);
      }
    }
    const first = component * this.dims;
    const columns = new Array(this.dims);
    for (let i = 0; i < this.dims; i++) columns[i] = decoder.decode(table.left, (first + i) * n, table.width + 1);
    return { component, columns };
  }

  latentsOf(s, escaped, level) {
    const table = this.tables[level];
    if (this.isCodebookLevel(level)) return this.codewordLatents(s.columns[0] === table.width ? escaped[0] : s.columns[0]);
    const first = s.component * this.dims;
    let e = 0;
    return s.columns.map((col, i) => (col === table.width ? escaped[e++] : col + table.lower[first + i]));
  }

  /** `floor(I / 8)` in exact integers (versions 1 and 2 start their search one byte below). */
  startLength(s, level) {
    const table = this.tables[level];
    const n = table.width + 1;
    let product = 1n;
    let symbols = s.columns.length;
    if (this.components > 1 && s.component !== null) {
      product = BigInt(this.componentTable.counts[s.component]);
      symbols += 1;
    }
    const first = (s.component ?? 0) * this.dims;
    for (let i = 0; i < s.columns.length; i++) product *= BigInt(table.counts[(first + i) * n + s.columns[i]]);
    const exponentBits = s.escaped.reduce((sum, v) => sum + overflowExponent(v), 0);
    const numerator = (1n << BigInt(this.precision * symbols + exponentBits)) * 130n ** BigInt(s.escaped.length);
    return Math.max(0, Math.floor((bitLength(numerator / product) - 1) / 8) - 1);
  }

  /**
   * A digit's information content under the integer tables, bits: its component's, each
   * symbol's `-log2(count / 2^precision)`, and each escaped value's overflow code (at a codebook
   * level the index's alone).
   */
  informationBits(s, level) {
    const table = this.tables[level];
    const n = table.width + 1;
    const first = (s.component ?? 0) * this.dims;
    let bits = this.components > 1 && s.component !== null ? this.componentBits[s.component] : 0;
    s.columns.forEach((col, i) => (bits += table.bits[(first + i) * n + col]));
    for (const v of s.escaped) bits += Math.log2(EXPONENTS) + overflowExponent(v);
    return bits;
  }

  /** One digit's string: `{bits, bytes}` (version 3) or bytes (versions 1 and 2). */
  encodeDigit(s, level, version = 3) {
    const encoder = new Encoder();
    this.encodeSymbols(encoder, s, level);
    for (const v of s.escaped) encoder.encodeOverflow(v);
    if (version === 3) return shortestBits(encoder);
    return shortestPrefix(encoder, this.startLength(s, level));
  }

  decodeDigit(bytes, start, end, level) {
    const decoder = new Decoder(bytes, start, end);
    const s = this.decodeSymbols(decoder, level);
    const escapes = s.columns.filter((c) => c === this.tables[level].width).length;
    const escaped = [];
    for (let e = 0; e < escapes; e++) escaped.push(decoder.decodeOverflow());
    return { ...s, escaped, k: this.latentsOf(s, escaped, level) };
  }

  encodeStream(digits, level) {
    const encoder = new Encoder();
    for (const s of digits) this.encodeSymbols(encoder, s, level);
    for (const s of digits) for (const v of s.escaped) encoder.encodeOverflow(v);
    return stripZeros(encoder.sealed());
  }

  decodeStream(bytes, start, end, count, level) {
    const decoder = new Decoder(bytes, start, end);
    const width = this.tables[level].width;
    const digits = [];
    for (let d = 0; d < count; d++) digits.push(this.decodeSymbols(decoder, level));
    for (const s of digits) {
      s.escaped = [];
      for (const c of s.columns) if (c === width) s.escaped.push(decoder.decodeOverflow());
      s.k = this.latentsOf(s, s.escaped, level);
    }
    return digits;
  }

  // -- the API ---------------------------------------------------------------------------------

  /**
   * Compress uint8 digits into the bytes of a version-3 .mnc file.
   * `images`: a Uint8Array of N * 784 pixels, or an array of 784-pixel arrays.
   * Options: one of `level`, `levels` (one level per digit, per-digit mode), `lmbda`,
   * `targetBits`, `targetPsnr`; `mode` ("per-digit" or "stream"), `blockSize` (default 4096).
   * At a codebook level a digit is sent as its nearest codeword's index. Returns the bytes;
   * `compressDetailed` returns more.
   */
  compress(images, options = {}) {
    return this.compressDetailed(images, options).data;
  }

  compressDetailed(images, options = {}) {
    const digits = toDigits(images);
    const mode = options.mode ?? "per-digit";
    const blockSize = options.blockSize ?? 4096;
    if (mode !== "per-digit" && mode !== "stream") fail("InputError", `unknown coding mode ${JSON.stringify(mode)}; expected one of per-digit, stream`);
    if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 2 ** 20) fail("InputError", `block size must be between 1 and ${2 ** 20}, got ${blockSize}`);
    if (!digits.length) fail("InputError", "no digits to compress (empty input)");
    const given = ["level", "levels", "lmbda", "targetBits", "targetPsnr"].filter((key) => options[key] !== undefined && options[key] !== null);
    if (given.length > 1) fail("InputError", `give one of level, levels, lmbda, targetBits or targetPsnr, not ${given.join(" and ")}`);
    let level = this.referenceLevel;
    let target = null;
    if (options.level !== undefined && options.level !== null) level = this.checkLevel(options.level);
    if (options.lmbda !== undefined && options.lmbda !== null) level = this.levelForLambda(options.lmbda);
    if (options.targetBits !== undefined && options.targetBits !== null) {
      if (!(options.targetBits > 0)) fail("InputError", `targetBits must be positive, got ${options.targetBits}`);
      target = { bits: options.targetBits };
    }
    if (options.targetPsnr !== undefined && options.targetPsnr !== null) {
      if (!(options.targetPsnr > 0 && options.targetPsnr <= 100)) fail("InputError", `targetPsnr must be in (0, 100] dB, got ${options.targetPsnr}`);
      target = { psnr: options.targetPsnr };
    }
    if (target) {
      if (this.levels < 2) fail("InputError", "rate control needs a variable-rate model (one with several levels)");
      if (mode !== "per-digit") fail("InputError", "rate control chooses a level per digit: use mode per-digit");
    }
    let digitLevels = null;
    if (options.levels !== undefined && options.levels !== null) {
      if (!Array.isArray(options.levels) && !ArrayBuffer.isView(options.levels)) fail("InputError", "levels must be an array of one level per digit");
      if (options.levels.length !== digits.length) fail("InputError", `levels lists ${options.levels.length} levels for ${digits.length} digits`);
      if (mode !== "per-digit") fail("InputError", "a level per digit needs mode per-digit");
      digitLevels = Array.from(options.levels, (l) => this.checkLevel(l));
    }
    const blocks = [];
    const perDigit = [];
    for (let first = 0; first < digits.length; first += blockSize) {
      const part = digits.slice(first, first + blockSize);
      const partLevels = digitLevels ? digitLevels.slice(first, first + blockSize) : part.map(() => level);
      if (mode === "stream") {
        const coded = this.chooseLatentsMany(part, level).map((k) => this.symbols(k, level));
        blocks.push({ levels: [level], stream: this.encodeStream(coded, level) });
        coded.forEach((s) => perDigit.push({ level, component: s.component }));
        continue;
      }
      const strings = [];
      const levels = [];
      const ks = new Array(part.length);
      if (!target) {
        for (const at of new Set(partLevels)) {
          const rows = partLevels.flatMap((l, i) => (l === at ? [i] : []));
          this.chooseLatentsMany(rows.map((i) => part[i]), at).forEach((k, j) => (ks[rows[j]] = k));
        }
      }
      const ys = target ? this.analyseMany(part) : null;
      part.forEach((pixels, i) => {
        let chosen;
        if (target) chosen = this.chooseLevel(pixels, ys[i], target, first + i);
        else {
          const at = partLevels[i];
          const s = this.symbols(ks[i], at);
          chosen = { level: at, string: this.encodeDigit(s, at), component: s.component };
        }
        strings.push(chosen.string);
        levels.push(chosen.level);
        perDigit.push({ level: chosen.level, bits: chosen.string.bits, component: chosen.component, psnr: chosen.psnr });
      });
      blocks.push({ levels: levels.every((l) => l === levels[0]) ? [levels[0]] : levels, strings });
    }
    const data = writeMnc({ version: 3, mode, count: digits.length, blockSize, fingerprint: this.fingerprint, blocks });
    return { data, digits: perDigit };
  }

  /** Rate control, as mnistcodec.coding.rate_control: every level tried, one kept. */
  chooseLevel(pixels, y, target, index) {
    const tries = [];
    const ks = [];
    const all = [];
    for (let level = 0; level < this.levels; level++) {
      const k = this.chooseLatents(pixels, level, y);
      const s = this.symbols(k, level);
      ks.push(k);
      all.push(level);
      tries.push({ level, string: this.encodeDigit(s, level), component: s.component });
    }
    const decoded = this.synthesiseMany(ks, all);
    tries.forEach((t, l) => (t.psnr = psnr(pixels, decoded.subarray(784 * l, 784 * (l + 1)))));
    let best = -1;
    let bestScore = -Infinity;
    if (target.bits !== undefined) {
      if (!tries.some((t) => t.string.bits <= target.bits)) {
        const least = Math.min(...tries.map((t) => t.string.bits));
        fail("InputError", `digit ${index} needs ${least} bits even at level 0, more than targetBits ${target.bits}`);
      }
      tries.forEach((t, l) => {
        const score = t.string.bits <= target.bits ? t.psnr - 1e-9 * t.string.bits : -Infinity;
        if (score > bestScore) [best, bestScore] = [l, score];
      });
    } else {
      const met = tries.some((t) => t.psnr >= target.psnr);
      tries.forEach((t, l) => {
        const score = t.psnr >= target.psnr ? -t.string.bits + 1e-9 * t.psnr : -Infinity;
        if (score > bestScore) [best, bestScore] = [l, score];
      });
      if (!met) {
        best = 0;
        tries.forEach((t, l) => {
          if (t.psnr > tries[best].psnr) best = l;
        });
      }
    }
    return tries[best];
  }

  /**
   * Decode a .mnc file: `{count, images (Uint8Array count * 784), levels, latents, components,
   * version, mode}`. Every check of docs/mnc-format.md runs; `check: false` skips only the
   * canonical-string check. A digit at a codebook level has latents `[index, 0, ..., 0]` and
   * component null; an index past the level's codewords is a DecodeError (corrupt data).
   */
  decompress(bytes, options = {}) {
    const check = options.check ?? true;
    const file = readMnc(toBytes(bytes));
    if (file.fingerprint !== this.fingerprint) {
      fail("WrongModelError", `file was written by model ${file.fingerprint.slice(0, 16)}..., not by the given model ${String(this.fingerprint).slice(0, 16)}...; decode it with the model that wrote it`);
    }
    if (file.count === 0) fail("FormatError", "the compressed file holds no digits");
    const checkLevels = (block) => {
      const top = Math.max(...block.levels);
      if (top >= this.levels) {
        fail("FormatError", `the file uses level ${top}, but this model has levels 0 to ${this.levels - 1}; decode it with the model that wrote it`);
      }
    };
    let start = 0;
    for (const block of file.blocks) {
      if (file.mode === 1) {
        checkLevels(block);
        const bytesIn = block.end - block.start;
        if (0.5 * block.count * this.tables[block.levels[0]].minBits > 8 * bytesIn + 64) {
          fail("DecodeError", `block ${block.index} (digits ${start} to ${start + block.count - 1}) does not decode: a ${bytesIn}-byte stream cannot hold ${block.count} digits`);
        }
      }
      start += block.count;
    }
    const latents = [];
    const components = [];
    const levels = [];
    start = 0;
    for (const block of file.blocks) {
      const where = `block ${block.index} (digits ${start} to ${start + block.count - 1})`;
      const digitLevels = block.levels.length === 1 ? new Array(block.count).fill(block.levels[0]) : block.levels;
      try {
        if (file.mode === 1) {
          const level = block.levels[0];
          const digits = this.decodeStream(file.data, block.start, block.end, block.count, level);
          if (check) {
            const again = this.encodeStream(digits, level);
            if (!sameBytes(again, file.data.subarray(block.start, block.end))) {
              fail("DecodeError", "stream is not the encoding of what it decodes to (corrupt data, or a file for another model)");
            }
          }
          for (const s of digits) {
            this.checkCodeword(s.k, level);
            latents.push(s.k);
            components.push(s.component);
          }
        } else {
          const strings = block.strings();
          checkLevels(block);
          strings.forEach((string, i) => {
            const level = digitLevels[i];
            const s = this.decodeDigit(string.data, string.start, string.end, level);
            if (check) {
              const held = string.data.subarray(string.start, string.end);
              if (file.version === 3) {
                const again = this.encodeDigit(s, level, 3);
                if (again.bits !== string.bits || !sameBytes(again.bytes, held)) {
                  fail("DecodeError", `string ${i} is not the encoding of what it decodes to (corrupt data, or a file for another model)`);
                }
              } else {
                if (held.length && held[held.length - 1] === 0) fail("DecodeError", `string ${i} is not canonical (trailing zero byte)`);
                if (!sameBytes(this.encodeDigit(s, level, file.version), held)) {
                  fail("DecodeError", `string ${i} is not the encoding of what it decodes to (corrupt data, or a file for another model)`);
                }
              }
            }
            this.checkCodeword(s.k, level);
            latents.push(s.k);
            components.push(s.component);
          });
        }
      } catch (err) {
        if (err instanceof MnistCodecError && err.kind === "DecodeError") {
          throw new MnistCodecError("DecodeError", `${where} does not decode: ${err.message}`);
        }
        throw err;
      }
      levels.push(...digitLevels);
      start += block.count;
    }
    const images = this.synthesiseMany(latents, levels);
    return { count: file.count, images, levels, latents, components, version: file.version, mode: file.mode === 0 ? "per-digit" : "stream" };
  }

  /**
   * `n` digits decoded from random `nbytes`-byte strings (decode check off) at `level`
   * (default: the reference level). A seeded xorshift generator draws the bytes, so a seed
   * gives the same digits in every runtime of this library (not the Python library's digits).
   * At a codebook level each string decodes to a codeword (one past the codewords is redrawn).
   */
  sample(n = 16, seed = 0, { nbytes = 8, level = null } = {}) {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 20) fail("InputError", `number of samples must be at least 1 and at most ${2 ** 20}, got ${n}`);
    if (!Number.isInteger(seed) || seed < 0) fail("InputError", `seed must be a non-negative integer, got ${seed}`);
    const at = level === null ? this.referenceLevel : this.checkLevel(level);
    const random = xorshift(seed);
    const latents = [];
    for (let attempt = 0; latents.length < n; attempt++) {
      if (attempt >= 100 * n) fail("InputError", `could not decode ${n} random ${nbytes}-byte strings with this model`);
      const bytes = new Uint8Array(nbytes);
      for (let i = 0; i < nbytes; i++) bytes[i] = random() & 0xff;
      let s;
      try {
        s = this.decodeDigit(bytes, 0, nbytes, at);
        this.checkCodeword(s.k, at);
      } catch (err) {
        if (err instanceof MnistCodecError) continue;
        throw err;
      }
      latents.push(s.k);
    }
    return { images: this.synthesiseMany(latents, new Array(n).fill(at)), latents, level: at };
  }

  /** The header of a .mnc file (no model needed). */
  inspect(bytes) {
    return inspect(bytes);
  }
}

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Latents to the synthesis transform's input: `y^ = (float32(k) + o) / g`, one float32 addition
 * then one float32 division; `float32(k)`: k to the nearest float64 (Number of a BigInt),
 * saturated to +-FLOAT32_MAX, then to the nearest float32.
 */
export function dequantise(k, offset, gain) {
  const v = Math.fround(Math.min(FLOAT32_MAX, Math.max(-FLOAT32_MAX, Number(k))));
  return Math.fround(Math.fround(v + offset) / gain);
}

/** numpy's pairwise summation of float64 (the order numpy's sum uses for short rows). */
function pairwiseSum(a, start = 0, n = a.length) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

function overflowExponent(value) {
  const k = BigInt(value);
  const z = k >= 0n ? 2n * k : -2n * k - 1n;
  return bitLength(z + 1n) - 1;
}

function nearestLevel(lmbda, lambdas) {
  if (!(lmbda > 0) || !Number.isFinite(lmbda)) fail("InputError", `lambda must be a positive number, got ${lmbda}`);
  let best = 0;
  lambdas.forEach((v, i) => {
    if (Math.abs(Math.log(v / lmbda)) < Math.abs(Math.log(lambdas[best] / lmbda))) best = i;
  });
  return best;
}

/** PSNR (dB) of a decoded digit, MSE on 0..255 floored so identical digits score 100 dB. */
export function psnr(a, b) {
  let sum = 0;
  for (let i = 0; i < 784; i++) sum += (a[i] - b[i]) ** 2;
  const floor = 255 ** 2 * 10 ** -10;
  return 10 * Math.log10(255 ** 2 / Math.max(sum / 784, floor));
}

function xorshift(seed) {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let t = Math.floor(seed / 2 ** 32) ^ 0x85ebca6b;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    t = (t + 0x6d2b79f5) | 0;
    return (s ^ t) >>> 0;
  };
}

function toBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  fail("InputError", "expected the bytes of a .mnc file (Uint8Array or ArrayBuffer)");
}

function toDigits(images) {
  const bad = () => fail("InputError", "digits must be uint8 28x28 images: a Uint8Array of N * 784 pixels or an array of 784-pixel arrays");
  if (images instanceof Uint8Array || images instanceof Uint8ClampedArray) {
    if (images.length % 784) bad();
    return Array.from({ length: images.length / 784 }, (_, i) => images.subarray(784 * i, 784 * (i + 1)));
  }
  if (!Array.isArray(images)) bad();
  return images.map((d) => {
    if (!d || d.length !== 784) bad();
    if (!(d instanceof Uint8Array)) {
      if (!Array.from(d).every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) bad();
      return Uint8Array.from(d);
    }
    return d;
  });
}

// -- float32 kernels -----------------------------------------------------------------------------

/** Digits at once through the dense layers. */
const BATCH = 32;

/** W h + b for `n` inputs (W (out, in) row-major; h and the result digit after digit), float32. */
function dense(h, n, W, bias, out, inn, relu) {
  const y = new Float32Array(n * out);
  for (let o = 0; o < out; o++) {
    const base = o * inn;
    for (let b = 0; b < n; b++) {
      const x = b * inn;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let i = 0;
      for (; i + 4 <= inn; i += 4) {
        s0 += W[base + i] * h[x + i];
        s1 += W[base + i + 1] * h[x + i + 1];
        s2 += W[base + i + 2] * h[x + i + 2];
        s3 += W[base + i + 3] * h[x + i + 3];
      }
      for (; i < inn; i++) s0 += W[base + i] * h[x + i];
      const v = s0 + s1 + (s2 + s3) + bias[o];
      y[b * out + o] = relu && v < 0 ? 0.2 * v : v;
    }
  }
  return y;
}

function leaky(h) {
  for (let i = 0; i < h.length; i++) if (h[i] < 0) h[i] = Math.fround(h[i] * 0.2);
}

/**
 * The 5x5 stride-2 layers as gathers: for each output position, the pairs (input position,
 * kernel index) that reach it, so that each output is a sum of dot products over the input
 * channels (contiguous: inputs are held position-major, weights as [out][kernel][in]).
 * Convolution (padding 2): output (i, j) of (size/2)^2 reads input (2i + a - 2, 2j + b - 2);
 * transposed convolution (padding 2, output padding 1): input (u, v) reaches output
 * (2u + a - 2, 2v + b - 2) of (2 size)^2.
 */
const PAIRS = new Map();

function layerPairs(transposed, size) {
  const key = `${transposed}:${size}`;
  if (PAIRS.has(key)) return PAIRS.get(key);
  const out = transposed ? 2 * size : size / 2;
  const list = [];
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < out; j++) {
      const pairs = [];
      for (let a = 0; a < 5; a++) {
        for (let b = 0; b < 5; b++) {
          let u;
          let v;
          if (transposed) {
            if ((i + 2 - a) % 2 || (j + 2 - b) % 2) continue;
            [u, v] = [(i + 2 - a) / 2, (j + 2 - b) / 2];
          } else [u, v] = [2 * i + a - 2, 2 * j + b - 2];
          if (u >= 0 && u < size && v >= 0 && v < size) pairs.push(u * size + v, a * 5 + b);
        }
      }
      list.push(Int32Array.from(pairs));
    }
  }
  PAIRS.set(key, list);
  return list;
}

/** Weights as [out][kernel][in]: from (out, in, 5, 5) (convolution) or (in, out, 5, 5) (transposed). */
function gatherWeights(W, cin, cout, transposed) {
  const t = new Float32Array(cout * 25 * cin);
  for (let o = 0; o < cout; o++) {
    for (let c = 0; c < cin; c++) {
      for (let k = 0; k < 25; k++) {
        t[(o * 25 + k) * cin + c] = W[(transposed ? c * cout + o : o * cin + c) * 25 + k];
      }
    }
  }
  return t;
}

/** A 5x5 stride-2 layer: h (cin, size, size) channel-first -> (cout, out, out) float32, plus bias. */
function strided(h, cin, size, Wt, bias, cout, transposed) {
  const positions = size * size;
  const hT = new Float32Array(positions * cin);
  for (let c = 0; c < cin; c++) for (let p = 0; p < positions; p++) hT[p * cin + c] = h[c * positions + p];
  const pairs = layerPairs(transposed, size);
  const count = pairs.length;
  const y = new Float32Array(cout * count);
  for (let p = 0; p < count; p++) {
    const pr = pairs[p];
    for (let o = 0; o < cout; o++) {
      let s0 = 0;
      let s1 = 0;
      const wo = o * 25 * cin;
      for (let t = 0; t < pr.length; t += 2) {
        const hb = pr[t] * cin;
        const wb = wo + pr[t + 1] * cin;
        let c = 0;
        for (; c + 2 <= cin; c += 2) {
          s0 += hT[hb + c] * Wt[wb + c];
          s1 += hT[hb + c + 1] * Wt[wb + c + 1];
        }
        if (c < cin) s0 += hT[hb + c] * Wt[wb + c];
      }
      y[o * count + p] = s0 + s1 + bias[o];
    }
  }
  return y;
}

/** Convolution 5x5, stride 2, padding 2 (PyTorch Conv2d), then leaky ReLU. */
function conv(h, cin, size, Wt, bias, cout) {
  const y = strided(h, cin, size, Wt, bias, cout, false);
  leaky(y);
  return y;
}

/** Transposed convolution 5x5, stride 2, padding 2, output padding 1 (PyTorch ConvTranspose2d). */
function convTranspose(h, cin, size, Wt, bias, cout) {
  return strided(h, cin, size, Wt, bias, cout, true);
}

// -- the .mnc container ----------------------------------------------------------------------

export const MAGIC = new Uint8Array([0x89, 0x4d, 0x4e, 0x43, 0x0d, 0x0a, 0x1a, 0x0a]);
const HEADER_SIZE = 66;
const MAX_BLOCK = 2 ** 20;
const MAX_FILE = 2 ** 30;

function readVarint(data, pos, end) {
  let value = 0;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) fail("FormatError", "corrupt file: a length field runs past the end of its payload");
    const byte = data[pos++];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (!(byte & 0x80)) return [value, pos];
  }
  fail("FormatError", "corrupt file: malformed length field (varint too long)");
}

function varint(value) {
  const out = [];
  while (value >= 0x80) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** Header fields after the checks of the spec's table, in its order (no model needed). */
export function parseHeader(data) {
  data = toBytes(data);
  if (!data.length) fail("FormatError", "empty file, not an mnistcodec compressed file");
  if (data.length > MAX_FILE) fail("FormatError", "file is over 1 GiB; this reader loads whole files");
  for (let i = 0; i < Math.min(8, data.length); i++) if (data[i] !== MAGIC[i]) fail("FormatError", "not an mnistcodec compressed file (bad magic)");
  if (data.length < 9) fail("TruncatedError", `file is truncated (${data.length} bytes, inside the header)`);
  const version = data[8];
  if (version < 1 || version > 3) fail("FormatError", `unsupported .mnc format version ${version}; this mnistcodec reads versions 1, 2, 3`);
  if (data.length < HEADER_SIZE) fail("TruncatedError", `file is truncated (${data.length} bytes, inside the ${HEADER_SIZE}-byte header)`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (crc32(data, 0, 62) !== view.getUint32(62)) fail("ChecksumError", "header checksum mismatch: the file is corrupt");
  const mode = data[9];
  const height = view.getUint16(10);
  const width = view.getUint16(12);
  const count = view.getUint32(14);
  const blockSize = view.getUint32(18);
  if (mode !== 0 && mode !== 1) fail("FormatError", `unknown coding mode ${mode} (expected 0 per-digit or 1 stream)`);
  if (height !== 28 || width !== 28) fail("FormatError", `unsupported digit shape ${height}x${width}; expected 28x28`);
  if (blockSize < 1 || blockSize > MAX_BLOCK) fail("FormatError", `invalid block size ${blockSize} (expected 1 to ${MAX_BLOCK})`);
  const payload = Number(view.getBigUint64(54));
  return { version, mode, count, blockSize, fingerprint: toHex(data.subarray(22, 54)), payload };
}

/** Every check that needs no model; the blocks as offsets into the data. */
export function readMnc(data) {
  data = toBytes(data);
  const header = parseHeader(data);
  const expected = HEADER_SIZE + header.payload + 4;
  if (data.length < expected) fail("TruncatedError", `file is truncated: ${data.length} bytes, but its header describes ${expected}`);
  if (data.length > expected) fail("TrailingDataError", `${data.length - expected} bytes of trailing data after the end of the file (${expected} bytes)`);
  const end = expected - 4;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (crc32(data, 0, end) !== view.getUint32(end)) fail("ChecksumError", "checksum mismatch: the file is corrupt");
  const blockCount = Math.ceil(header.count / header.blockSize);
  if ((header.mode === 0 ? header.count : blockCount) > end - HEADER_SIZE) {
    fail("FormatError", `corrupt file: it claims ${header.count} digits but its payload is too short to hold them`);
  }
  const blocks = [];
  let pos = HEADER_SIZE;
  for (let index = 0; index < blockCount; index++) {
    const n = Math.min(header.blockSize, header.count - index * header.blockSize);
    let levels = [0];
    if (header.version !== 1) {
      if (pos >= end) fail("FormatError", "corrupt file: a block's levels run past the end of the payload");
      const kind = data[pos];
      let size;
      if (kind === 0) size = 1;
      else if (kind === 1 && header.mode === 0) size = n;
      else fail("FormatError", `corrupt file: unknown level layout ${kind} in a ${header.mode === 0 ? "per-digit" : "stream"} block`);
      if (pos + 1 + size > end) fail("FormatError", "corrupt file: a block's levels run past the end of the payload");
      levels = Array.from(data.subarray(pos + 1, pos + 1 + size));
      pos += 1 + size;
    }
    if (header.mode === 1) {
      let length;
      [length, pos] = readVarint(data, pos, end);
      if (length > end - pos) fail("FormatError", "corrupt file: a stream runs past the end of the payload");
      blocks.push({ index, count: n, levels, start: pos, end: pos + length });
      pos += length;
      continue;
    }
    const lengths = [];
    let total = 0;
    for (let i = 0; i < n; i++) {
      let length;
      [length, pos] = readVarint(data, pos, end);
      lengths.push(length);
      total += length;
    }
    const size = header.version === 3 ? Math.ceil(total / 8) : total;
    if (size > end - pos) fail("FormatError", "corrupt file: strings run past the end of the payload");
    const region = { data, pos, size, lengths };
    const strings = header.version === 3 ? () => unpackBits(region) : () => byteStrings(region);
    blocks.push({ index, count: n, levels, strings, lengths });
    pos += size;
  }
  if (pos !== end) fail("FormatError", `corrupt file: ${end - pos} payload bytes are not part of any block`);
  return { ...header, data, blocks };
}

function byteStrings({ data, pos, lengths }) {
  return lengths.map((length) => {
    const s = { data, start: pos, end: pos + length, bits: 8 * length };
    pos += length;
    return s;
  });
}

const bitAt = (data, pos, bit) => (data[pos + (bit >> 3)] >> (7 - (bit & 7))) & 1;

/** Version 3: each string's bits copied out as bytes (its bits, then zero bits), checked. */
function unpackBits({ data, pos, size, lengths }) {
  let bit = 0;
  const strings = lengths.map((length) => {
    const bytes = new Uint8Array(Math.ceil(length / 8));
    for (let i = 0; i < length; i++) if (bitAt(data, pos, bit + i)) bytes[i >> 3] |= 0x80 >> (i & 7);
    if (length && !bitAt(data, pos, bit + length - 1)) fail("FormatError", "corrupt file: a string does not end with a 1 bit");
    bit += length;
    return { data: bytes, start: 0, end: bytes.length, bits: length };
  });
  for (; bit < 8 * size; bit++) if (bitAt(data, pos, bit)) fail("FormatError", "corrupt file: a block's padding bits are not zero");
  return strings;
}

/** The bytes of a .mnc file from blocks ({levels, strings: [{bits, bytes}]} or {levels, stream}). */
function writeMnc({ version, mode, count, blockSize, fingerprint, blocks }) {
  const payload = [];
  for (const block of blocks) {
    if (version >= 2) payload.push(block.levels.length === 1 ? [0, block.levels[0]] : [1, ...block.levels]);
    if (mode === "stream") {
      payload.push(varint(block.stream.length), block.stream);
      continue;
    }
    payload.push(block.strings.flatMap((s) => varint(s.bits)));
    const total = block.strings.reduce((sum, s) => sum + s.bits, 0);
    const packed = new Uint8Array(Math.ceil(total / 8));
    let bit = 0;
    for (const s of block.strings) {
      for (let i = 0; i < s.bits; i++) {
        if ((s.bytes[i >> 3] >> (7 - (i & 7))) & 1) packed[(bit + i) >> 3] |= 0x80 >> ((bit + i) & 7);
      }
      bit += s.bits;
    }
    payload.push(packed);
  }
  const size = payload.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(HEADER_SIZE + size + 4);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[8] = version;
  out[9] = mode === "stream" ? 1 : 0;
  view.setUint16(10, 28);
  view.setUint16(12, 28);
  view.setUint32(14, count);
  view.setUint32(18, blockSize);
  for (let i = 0; i < 32; i++) out[22 + i] = parseInt(fingerprint.slice(2 * i, 2 * i + 2), 16);
  view.setBigUint64(54, BigInt(size));
  view.setUint32(62, crc32(out, 0, 62));
  let pos = HEADER_SIZE;
  for (const p of payload) {
    out.set(p, pos);
    pos += p.length;
  }
  view.setUint32(pos, crc32(out, 0, pos));
  return out;
}

/** What `mnistcodec inspect` shows: header fields, blocks, each digit's string length and level. */
export function inspect(bytes) {
  const file = readMnc(bytes);
  const blocks = file.blocks.map((b) => ({
    digits: b.count,
    levels: b.levels.length === 1 ? new Array(b.count).fill(b.levels[0]) : b.levels,
    ...(file.mode === 1 ? { streamBytes: b.end - b.start } : { stringBits: file.version === 3 ? b.lengths : b.lengths.map((l) => 8 * l) }),
  }));
  return {
    version: file.version,
    mode: file.mode === 0 ? "per-digit" : "stream",
    count: file.count,
    blockSize: file.blockSize,
    fingerprint: file.fingerprint,
    payloadBytes: file.payload,
    fileBytes: file.data.length,
    blocks,
  };
}

// -- IDX files (for the command line) --------------------------------------------------------

export function readIdx(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 16 || view.getUint32(0) !== 0x803) fail("InputError", "not an IDX file of uint8 images (magic 0x803)");
  const n = view.getUint32(4);
  if (view.getUint32(8) !== 28 || view.getUint32(12) !== 28 || bytes.length !== 16 + 784 * n) fail("InputError", "IDX images must be 28x28 and the file complete");
  return bytes.subarray(16);
}

export function writeIdx(images) {
  const out = new Uint8Array(16 + images.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x803);
  view.setUint32(4, images.length / 784);
  view.setUint32(8, 28);
  view.setUint32(12, 28);
  out.set(images, 16);
  return out;
}

// -- Node command line -------------------------------------------------------------------------

const USAGE = `usage: node mnistcodec.js COMMAND ...
  decompress MODEL FILE.mnc [OUT.idx] [--latents]   decode; prints a JSON summary
  compress MODEL IMAGES.idx OUT.mnc [--level L | --levels L0,L1,... | --lmbda X | --target-bits B | --target-psnr P]
           [--mode per-digit|stream] [--block-size B] [--first I] [--count N]
           (--levels: one level per digit compressed)
  inspect FILE.mnc                                  the header and blocks, as JSON
  sample MODEL N SEED OUT.idx [--level L]           decode random bits
Errors print one line and exit with status 2.`;

async function main(argv) {
  const fs = await import("node:fs/promises");
  const flags = {};
  const args = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) {
      const name = argv[i].slice(2);
      flags[name] = name === "latents" ? true : argv[++i];
    } else args.push(argv[i]);
  }
  const read = async (path) => {
    try {
      return new Uint8Array(await fs.readFile(path));
    } catch {
      fail("InputError", `cannot read ${path}`);
    }
  };
  const number = (name) => (flags[name] === undefined ? undefined : Number(flags[name]));
  const [command, ...rest] = args;
  const print = (value) => process.stdout.write(JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) + "\n");
  if (command === "decompress" && rest.length >= 2) {
    const model = await loadModel(rest[0]);
    const result = model.decompress(await read(rest[1]));
    if (rest[2]) await fs.writeFile(rest[2], writeIdx(result.images));
    const summary = { count: result.count, version: result.version, mode: result.mode, levels: result.levels, components: result.components };
    if (flags.latents) summary.latents = result.latents;
    print(summary);
  } else if (command === "compress" && rest.length === 3) {
    const model = await loadModel(rest[0]);
    let images = readIdx(await read(rest[1]));
    const first = number("first") ?? 0;
    const count = number("count") ?? images.length / 784 - first;
    images = images.subarray(784 * first, 784 * (first + count));
    const levels = flags.levels === undefined ? undefined : flags.levels.split(",").map(Number);
    const options = { level: number("level"), levels, lmbda: number("lmbda"), targetBits: number("target-bits"), targetPsnr: number("target-psnr"), mode: flags.mode, blockSize: number("block-size") };
    const result = model.compressDetailed(images, options);
    await fs.writeFile(rest[2], result.data);
    print({ count: count, bytes: result.data.length });
  } else if (command === "inspect" && rest.length === 1) {
    print(inspect(await read(rest[0])));
  } else if (command === "sample" && rest.length === 4) {
    const model = await loadModel(rest[0]);
    const result = model.sample(Number(rest[1]), Number(rest[2]), { level: number("level") ?? null });
    await fs.writeFile(rest[3], writeIdx(result.images));
    print({ count: Number(rest[1]), level: result.level });
  } else {
    process.stdout.write(USAGE + "\n");
    return command === "help" || command === undefined ? 0 : 2;
  }
  return 0;
}

if (typeof process !== "undefined" && process.versions && process.versions.node && process.argv[1]) {
  const { pathToFileURL } = await import("node:url");
  const { realpathSync } = await import("node:fs");
  let self = false;
  try {
    self = pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;
  } catch {
    self = false;
  }
  if (self) {
    main(process.argv.slice(2)).then(
      (code) => process.exit(code),
      (err) => {
        if (err instanceof MnistCodecError) {
          process.stderr.write(`error: ${err.message}\n`);
          process.exit(2);
        }
        throw err;
      },
    );
  }
}
