"""mnistcodec.js against the Python library, through Node (``node mnistcodec.js ...``).

The JavaScript library (``src/mnistcodec/web/mnistcodec.js``, docs/javascript.md)
is a second implementation of docs/mnc-format.md and docs/model-format.md.
Here Node runs its command line and the Python library checks what it does:

* every golden file decodes in JavaScript to the latents Python decodes and to
  pixels within one grey level of Python's fp32 path; the overflow vectors to
  their recorded latents;
* digits compressed in JavaScript give the same ``.mnc`` bytes as Python's for
  all but at most 0.1 % of digits (float rounding in the analysis may move a
  latent across a rounding boundary); the differing digits are counted and
  printed, and every JavaScript file decodes in Python to its own latents;
* files Python writes decode in JavaScript (fresh files, every mode);
* crafted bad files get the library's error, of the same kind as Python's;
* ``vr-codebook`` (model format version 2, codebook levels 0-4): JavaScript files at
  codebook levels, network levels and both mixed in a block are Python's bytes, Python's
  files of every version decode alike, the fingerprint is Python's, a codebook index past
  the codewords and bad version-2 records give Python's errors.

Node 20 is required (it is on the machine: no other runtime is downloaded).
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import Block, Header, encode_file, parse_file
from mnistcodec.coding.files import compress_to_bytes, decode_latents_bytes, decompress_bytes
from mnistcodec.coding.model_files import load_model_bytes
from mnistcodec.coding.rate_control import LevelChoice, RateTarget
from mnistcodec.data import load_split
from mnistcodec.errors import FormatError, MnistCodecError, ModelFileError
from mnistcodec.storage.model_container import content_hash

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "src" / "mnistcodec" / "web" / "mnistcodec.js"
PRETRAINED = ROOT / "src" / "mnistcodec" / "pretrained"
GOLDEN = ROOT / "tests" / "golden"
NODE = shutil.which("node")
GOLDEN_FILES = sorted(
    p.name for p in GOLDEN.glob("*.mnc") if not p.name.startswith(("overflow", "kinds"))
)
KIND_FILES = sorted(p.name for p in GOLDEN.glob("kinds.*.mnc"))
OVERFLOW_FILES = sorted(p.name for p in GOLDEN.glob("overflow*.mnc"))
#: Test digits compressed per case (the bench script measures all 10,000).
DIGITS = 200

pytestmark = pytest.mark.skipif(NODE is None, reason="node (20 or later) is not installed")


def run_script(script: str, payload, timeout: int = 300):
    """A module script run by Node in the library's folder, JSON in and out."""
    result = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=json.dumps(payload),
        cwd=LIBRARY.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def node(*args, check: bool = True) -> subprocess.CompletedProcess:
    """``node mnistcodec.js ARGS`` (exit status 0, or 2 with one error line, never a trace)."""
    result = subprocess.run(
        [NODE, str(LIBRARY), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def model_path(name: str) -> Path:
    return PRETRAINED / f"{name}.safetensors"


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    _, n, rows, cols = struct.unpack_from(">IIII", data)
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)


def write_idx(path: Path, images: np.ndarray) -> None:
    path.write_bytes(struct.pack(">IIII", 0x803, images.shape[0], 28, 28) + images.tobytes())


def as_int(value) -> int:
    """A latent as the JSON carries it: a number, or ``"<digits>n"`` beyond 2**53."""
    return int(value[:-1]) if isinstance(value, str) else int(value)


def js_decode(model: str, path: Path, tmp_path: Path) -> tuple[dict, np.ndarray]:
    """``node mnistcodec.js decompress MODEL FILE OUT.idx --latents``: its summary and digits."""
    out = tmp_path / "js-decoded.idx"
    result = node("decompress", model_path(model), path, out, "--latents")
    summary = json.loads(result.stdout)
    summary["latents"] = [[as_int(v) for v in row] for row in summary["latents"]]
    return summary, read_idx(out)


# One Node process decodes every golden file with the library's API (a model loads once).
DECODE_ALL = """
import { loadModel } from "./mnistcodec.js";
import { readFileSync } from "node:fs";
const models = {};
const out = {};
for (const [model, file] of JSON.parse(readFileSync(0, "utf8"))) {
  models[model] ??= await loadModel(model);
  const r = models[model].decompress(readFileSync(file));
  out[file] = { count: r.count, version: r.version, levels: r.levels, latents: r.latents,
                images: Buffer.from(r.images).toString("base64") };
}
console.log(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? `${v}n` : v)));
"""


@pytest.fixture(scope="module")
def js_golden() -> dict[str, dict]:
    """Every golden file decoded in Node: count, version, levels, latents and digits."""
    overflow = json.loads((GOLDEN / "overflow.latents.json").read_text())["model"]
    pairs = [(str(model_path(n.split(".")[0])), str(GOLDEN / n)) for n in GOLDEN_FILES]
    pairs += [(str(model_path(overflow)), str(GOLDEN / n)) for n in OVERFLOW_FILES]
    pairs += [(str(model_path(n.split(".")[1])), str(GOLDEN / n)) for n in KIND_FILES]
    decoded = {}
    for file, value in run_script(DECODE_ALL, pairs, timeout=900).items():
        value["latents"] = [[as_int(v) for v in row] for row in value["latents"]]
        images = np.frombuffer(base64.b64decode(value["images"]), np.uint8)
        value["images"] = images.reshape(-1, 28, 28)
        decoded[Path(file).name] = value
    return decoded


@pytest.fixture(scope="module")
def test_digits() -> np.ndarray:
    return load_split("test").images[:DIGITS]


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden_file_decodes_in_javascript_as_in_python(name, js_golden):
    model = name.split(".")[0]
    codec = Codec.from_model(model, precision="fp32")
    data = (GOLDEN / name).read_bytes()
    decoded = js_golden[name]
    assert decoded["latents"] == decode_latents_bytes(codec, data).astype(np.int64).tolist()
    pixels = decoded["images"].astype(int)
    assert np.abs(pixels - decompress_bytes(codec, data)).max() <= 1
    own = GOLDEN / f"{name.removesuffix('.mnc')}.digits.idx"  # a file at other levels
    expected = own if own.exists() else GOLDEN / f"{model}.decoded.idx"
    assert np.abs(pixels - read_idx(expected)).max() <= 1
    header, blocks = parse_file(data)
    assert decoded["levels"] == [lv for b in blocks for lv in b.digit_levels()]
    assert decoded["version"] == header.version and decoded["count"] == header.count


@pytest.mark.parametrize("name", OVERFLOW_FILES)
def test_overflow_vectors_decode_in_javascript(name, js_golden):
    record = json.loads((GOLDEN / "overflow.latents.json").read_text())
    assert js_golden[name]["latents"] == record["latents"]


@pytest.mark.parametrize("name", KIND_FILES)
def test_every_version_decodes_with_every_model_kind_in_javascript(name, js_golden):
    """A version-1 file of a variable-rate model (level 0), a version-2 file of a fixed-rate one."""
    expected = json.loads((GOLDEN / "kinds.latents.json").read_text())[name]
    assert js_golden[name]["latents"] == expected
    assert js_golden[name]["version"] == int(name[-5]) and set(js_golden[name]["levels"]) == {0}
    codec = Codec.from_model(name.split(".")[1], precision="fp32")
    python = decompress_bytes(codec, (GOLDEN / name).read_bytes())
    assert np.abs(js_golden[name]["images"].astype(int) - python).max() <= 1


def test_the_dequantisation_vectors_of_the_spec():
    """docs/mnc-format.md, latents to pixels: (float32(k) + o) / g, bit for bit."""
    script = (
        "import { dequantise } from './mnistcodec.js'; import { readFileSync } from 'node:fs';"
        "const f = (h) => new Float32Array(new Uint32Array([parseInt(h, 16)]).buffer)[0];"
        "const hex = (v) => new Uint32Array(new Float32Array([v]).buffer)[0].toString(16).padStart(8, '0');"
        "const cases = JSON.parse(readFileSync(0, 'utf8')).cases;"
        "console.log(JSON.stringify(cases.map((c) => hex(dequantise(BigInt(c.k), f(c.offset), f(c.gain))))));"
    )
    vectors = json.loads((GOLDEN / "dequantisation.json").read_text())
    assert run_script(script, vectors, timeout=120) == [c["y_hat"] for c in vectors["cases"]]


def test_the_command_line_decodes_a_golden_file(tmp_path):
    summary, pixels = js_decode("vr-mixture", GOLDEN / "vr-mixture.v3.stream.mnc", tmp_path)
    codec = Codec.from_model("vr-mixture", precision="fp32")
    data = (GOLDEN / "vr-mixture.v3.stream.mnc").read_bytes()
    assert summary["latents"] == decode_latents_bytes(codec, data).astype(np.int64).tolist()
    assert np.abs(pixels.astype(int) - decompress_bytes(codec, data)).max() <= 1
    assert summary["count"] == 24 and summary["mode"] == "stream" and summary["version"] == 3


def compare_files(js: bytes, py: bytes, codec: Codec) -> list[int]:
    """The digits whose strings differ (JavaScript file vs Python file); the JS file must decode."""
    decompress_bytes(codec, js)  # every check, the canonical-string check included
    if js == py:
        return []
    (js_header, js_blocks), (py_header, py_blocks) = parse_file(js), parse_file(py)
    assert (js_header.count, js_header.mode, js_header.version) == (
        py_header.count,
        py_header.mode,
        py_header.version,
    )
    differing, first = [], 0
    for a, b in zip(js_blocks, py_blocks, strict=True):
        if a.stream:  # a stream block: every digit of a differing block counts
            if a.stream != b.stream:
                differing += list(range(first, first + a.count))
        else:
            pairs = zip(a.strings, b.strings, a.digit_levels(), b.digit_levels(), strict=True)
            differing += [first + i for i, (s, t, u, v) in enumerate(pairs) if (s, u) != (t, v)]
        first += a.count
    return differing


CASES = [
    ("seed-lmbda2000", [], "per-digit", None),
    ("improved-lmbda1000", [], "stream", None),
    ("vr", ["--lmbda", "300"], "per-digit", 300.0),  # a lambda: its nearest level
    ("vr-mixture", [], "per-digit", None),
    ("vr-mixture", ["--level", "12"], "stream", LevelChoice(level=12)),
    ("vr-mixture-long", ["--level", "0"], "per-digit", LevelChoice(level=0)),
]


@pytest.mark.parametrize("model, flags, mode, choice", CASES)
def test_javascript_files_match_python_files(model, flags, mode, choice, test_digits, tmp_path):
    images = tmp_path / "digits.idx"
    write_idx(images, test_digits)
    out = tmp_path / "js.mnc"
    node("compress", model_path(model), images, out, "--mode", mode, "--block-size", 128, *flags)
    codec = Codec.from_model(model, precision="fp32")
    if isinstance(choice, float):
        choice = LevelChoice(level=codec.level_for_lambda(choice))
    python = compress_to_bytes(codec, test_digits, mode=mode, block_size=128, choice=choice)
    differing = compare_files(out.read_bytes(), python.data, codec)
    print(f"{model} {mode} {flags}: {len(differing)} of {DIGITS} digits differ {differing}")
    assert len(differing) <= DIGITS // 1000


@pytest.mark.parametrize("target", [RateTarget(bits=40), RateTarget(psnr=20)])
def test_rate_control_in_javascript_matches_python(target, test_digits, tmp_path):
    digits = test_digits[:60]
    images = tmp_path / "digits.idx"
    write_idx(images, digits)
    out = tmp_path / "js.mnc"
    flag = ["--target-bits", target.bits] if target.bits else ["--target-psnr", target.psnr]
    node("compress", model_path("vr-mixture"), images, out, *flag)
    codec = Codec.from_model("vr-mixture", precision="fp32")
    python = compress_to_bytes(codec, digits, choice=LevelChoice(target=target))
    differing = compare_files(out.read_bytes(), python.data, codec)
    print(f"rate control {target}: {len(differing)} of {len(digits)} digits differ {differing}")
    assert not differing


@pytest.mark.parametrize("model", ["improved-lmbda500", "vr-mixture-long"])
@pytest.mark.parametrize("mode", ["per-digit", "stream"])
def test_fresh_python_files_decode_in_javascript(model, mode, test_digits, tmp_path):
    codec = Codec.from_model(model, precision="fp32")
    digits = test_digits[:50]
    data = compress_to_bytes(codec, digits, mode=mode, block_size=16).data
    path = tmp_path / "py.mnc"
    path.write_bytes(data)
    summary, pixels = js_decode(model, path, tmp_path)
    assert summary["latents"] == decode_latents_bytes(codec, data).astype(np.int64).tolist()
    assert np.abs(pixels.astype(int) - decompress_bytes(codec, data)).max() <= 1


# -- bad files: the library's error in both runtimes ------------------------------------------


def with_crcs(data: bytearray) -> bytes:
    """Fix both CRCs after an edit (a crafted file: only the structure is wrong)."""
    struct.pack_into(">I", data, 62, zlib.crc32(bytes(data[:62])))
    struct.pack_into(">I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def crafted() -> dict[str, tuple[str, bytes]]:
    good = (GOLDEN / "vr.v3.per-digit.mnc").read_bytes()
    other = (GOLDEN / "seed-lmbda2000.v3.per-digit.mnc").read_bytes()
    stream = (GOLDEN / "vr.v3.stream.mnc").read_bytes()
    flipped = bytearray(good)
    flipped[80] ^= 0x10
    version = bytearray(good)
    version[8] = 7
    level = bytearray(good)
    level[67] = 40  # the block's level: not one of the 16
    string = bytearray((GOLDEN / "vr.per-digit.mnc").read_bytes())
    string[-7] ^= 0x01  # a bit of the last byte string, CRCs fixed: not canonical
    short_stream = bytearray(stream[:66]) + bytes([0, 10, 1, 0x80]) + bytes(4)
    struct.pack_into(">Q", short_stream, 54, 4)
    padding = bytearray(other)  # seed-lmbda2000's file: for the vr model, the wrong model
    padding[-5] |= 0x01  # a 1 in the last block's padding bits, CRCs fixed
    level_and_padding = bytearray(level)
    level_and_padding[-5] |= 0x01
    return {
        "padding bit and wrong model": ("WrongModelError", with_crcs(padding)),
        "unknown level and padding bit": ("FormatError", with_crcs(level_and_padding)),
        "empty": ("FormatError", b""),
        "bad magic": ("FormatError", b"PK\x03\x04" + good[4:]),
        "truncated header": ("TruncatedError", good[:30]),
        "unknown version": ("FormatError", bytes(version)),
        "truncated": ("TruncatedError", good[:-9]),
        "trailing data": ("TrailingDataError", good + b"\0"),
        "corrupt payload": ("ChecksumError", bytes(flipped)),
        "wrong model": ("WrongModelError", other),
        "unknown level": ("FormatError", with_crcs(level)),
        "string that does not decode": ("DecodeError", with_crcs(string)),
        "stream far too short": ("DecodeError", with_crcs(short_stream)),
    }


# Each crafted file through the library's API in one Node process: the error's class, kind, message.
PROBE = """
import { loadModel } from "./mnistcodec.js";
import { readFileSync } from "node:fs";
const [model, files] = JSON.parse(readFileSync(0, "utf8"));
const m = await loadModel(model);
const out = {};
for (const file of files) {
  try { m.decompress(readFileSync(file)); out[file] = null; }
  catch (e) { out[file] = [e.constructor.name, e.kind, e.message]; }
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def js_errors(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("crafted")
    files = {}
    for case, (_, data) in crafted().items():
        files[case] = folder / f"{case.replace(' ', '-')}.mnc"
        files[case].write_bytes(data)
    errors = run_script(PROBE, [str(model_path("vr")), [str(f) for f in files.values()]])
    return {case: errors[str(path)] for case, path in files.items()}


@pytest.mark.parametrize("case", sorted(crafted()))
def test_bad_files_give_the_library_error_in_both_runtimes(case, js_errors):
    kind, data = crafted()[case]
    with pytest.raises(FormatError) as info:
        decompress_bytes(Codec.from_model("vr"), data)
    assert type(info.value).__name__ == kind
    assert js_errors[case] is not None, "the library decoded a bad file"
    name, js_kind, message = js_errors[case]
    assert (name, js_kind) == ("MnistCodecError", kind)
    # the same check fails first in both runtimes, worded alike
    assert message.split(":")[0] == str(info.value).split(":")[0]


@pytest.mark.parametrize("case", ["corrupt payload", "string that does not decode"])
def test_bad_files_give_one_error_line_from_the_command_line(case, tmp_path):
    path = tmp_path / "bad.mnc"
    path.write_bytes(crafted()[case][1])
    result = node("decompress", model_path("vr"), path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_bad_model_files_and_arguments_give_one_error_line(tmp_path):
    corrupt = bytearray(model_path("seed-lmbda2000").read_bytes())
    corrupt[-100] ^= 0xFF  # a synthesis weight: the fingerprint no longer matches
    (tmp_path / "corrupt.safetensors").write_bytes(bytes(corrupt))
    (tmp_path / "text.safetensors").write_text("not a model")
    mnc = GOLDEN / "seed-lmbda2000.v3.per-digit.mnc"
    for model, message in [
        (tmp_path / "missing.safetensors", "no model file"),
        (tmp_path / "text.safetensors", "not a model file"),
        (tmp_path / "corrupt.safetensors", "mismatch"),
        (tmp_path, "is a directory"),
    ]:
        result = node("decompress", model, mnc, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1
    result = node("compress", model_path("vr"), mnc, tmp_path / "x.mnc", check=False)
    assert result.returncode == 2 and "IDX" in result.stderr
    images = tmp_path / "d.idx"
    write_idx(images, np.zeros((2, 28, 28), np.uint8))
    result = node(
        "compress", model_path("vr"), images, tmp_path / "x.mnc", "--level", 16, check=False
    )
    assert result.returncode == 2 and "level 16 does not exist" in result.stderr
    assert issubclass(FormatError, MnistCodecError)


def test_javascript_samples_decode_random_bits(tmp_path):
    out = tmp_path / "samples.idx"
    node("sample", model_path("vr-mixture"), 8, 3, out)
    first = read_idx(out).copy()
    node("sample", model_path("vr-mixture"), 8, 3, out)
    assert first.shape == (8, 28, 28) and np.array_equal(first, read_idx(out))
    assert first.max() > 0


# -- codebook levels (model format version 2): vr-codebook ---------------------------------

CODEBOOK = "vr-codebook"
#: Test digits per codebook case: digit n of a mixed file is at level n mod 16.
CODEBOOK_DIGITS = 32
#: JavaScript files, one Node process: ``name -> (options, Python's choice or None: mixed)``.
CODEBOOK_JOBS = {
    "codebook level 2, per-digit": {"level": 2, "mode": "per-digit", "blockSize": 16},
    "codebook level 4, stream": {"level": 4, "mode": "stream", "blockSize": 16},
    "network level 9, per-digit": {"level": 9, "mode": "per-digit", "blockSize": 16},
    "levels n mod 16, per-digit": {"levels": [n % 16 for n in range(CODEBOOK_DIGITS)]},
}
COMPRESS_JOBS = """
import { loadModel } from "./mnistcodec.js";
import { readFileSync } from "node:fs";
const [model, images, jobs] = JSON.parse(readFileSync(0, "utf8"));
const m = await loadModel(model);
const pixels = new Uint8Array(readFileSync(images).subarray(16));
const files = {};
for (const [name, options] of Object.entries(jobs)) {
  files[name] = Buffer.from(m.compress(pixels, { blockSize: 16, ...options })).toString("base64");
}
const samples = Buffer.from(m.sample(6, 5, { level: 1 }).images).toString("base64");
console.log(JSON.stringify({ fingerprint: m.fingerprint, describe: m.describe(), files, samples }));
"""


@pytest.fixture(scope="module")
def codebook_codec() -> Codec:
    return Codec.from_model(CODEBOOK, precision="fp32")


@pytest.fixture(scope="module")
def codebook_digits() -> np.ndarray:
    return load_split("test").images[:CODEBOOK_DIGITS]


@pytest.fixture(scope="module")
def js_codebook(codebook_digits, tmp_path_factory) -> dict:
    """Every case of CODEBOOK_JOBS compressed in Node, the model's fingerprint, 6 samples at level 1."""
    images = tmp_path_factory.mktemp("codebook") / "digits.idx"
    write_idx(images, codebook_digits)
    return run_script(COMPRESS_JOBS, [str(model_path(CODEBOOK)), str(images), CODEBOOK_JOBS])


def mixed_file(codec: Codec, digits: np.ndarray, levels, version: int = 3, block: int = 16):
    """Python's per-digit file with a level per digit (``compress_to_bytes`` takes one level)."""
    granularity = "bit" if version == 3 else "byte"
    strings, _ = codec.compress(digits, np.asarray(levels), granularity=granularity)
    blocks = [
        Block(
            len(strings[i : i + block]),
            strings=strings[i : i + block],
            levels=levels[i : i + block],
        )
        for i in range(0, len(strings), block)
    ]
    header = Header(
        "per-digit", len(strings), block, bytes.fromhex(codec.fingerprint), version=version
    )
    return encode_file(header, blocks)


@pytest.mark.parametrize("case", sorted(CODEBOOK_JOBS))
def test_javascript_files_at_codebook_levels_are_python_s_bytes(
    case, js_codebook, codebook_codec, codebook_digits
):
    options = CODEBOOK_JOBS[case]
    if "levels" in options:
        python = mixed_file(codebook_codec, codebook_digits, options["levels"])
    else:
        choice = LevelChoice(level=options["level"])
        python = compress_to_bytes(
            codebook_codec, codebook_digits, mode=options["mode"], block_size=16, choice=choice
        ).data
    js = base64.b64decode(js_codebook["files"][case])
    assert js == python, compare_files(js, python, codebook_codec)


def test_the_command_line_compresses_a_level_per_digit(codebook_codec, codebook_digits, tmp_path):
    digits, levels = codebook_digits[:6], [0, 7, 4, 4, 15, 1]
    images, out = tmp_path / "digits.idx", tmp_path / "js.mnc"
    write_idx(images, digits)
    node("compress", model_path(CODEBOOK), images, out, "--levels", ",".join(map(str, levels)))
    python = mixed_file(codebook_codec, digits, levels, block=4096)  # the default block size
    assert out.read_bytes() == python
    assert parse_file(python)[1][0].digit_levels() == levels


def test_javascript_reads_the_version_2_model_as_python(js_codebook, codebook_codec):
    assert js_codebook["fingerprint"] == codebook_codec.fingerprint
    describe = js_codebook["describe"]
    assert describe["codebookLevels"] == sorted(codebook_codec.loaded.codebooks)
    assert describe["codebookSizes"] == [
        b.size for _, b in sorted(codebook_codec.loaded.codebooks.items())
    ]
    assert describe["formatVersion"] == 2 and describe["levels"] == 16


def python_codebook_files(codec: Codec, digits: np.ndarray) -> dict[str, bytes]:
    """Python's files of every .mnc version (a version-1 file is at level 0, a codebook level)."""
    fingerprint = bytes.fromhex(codec.fingerprint)
    n = digits.shape[0]
    level_0, _ = codec.compress(digits, 0, granularity="byte")
    stream, _ = codec.compress_stream(digits, 3)
    return {
        "v3 mixed": mixed_file(codec, digits, [i % 16 for i in range(n)], block=8),
        "v2 mixed": mixed_file(codec, digits, [(3 * i) % 16 for i in range(n)], version=2),
        "v1 per-digit": encode_file(
            Header("per-digit", n, n, fingerprint, version=1), [Block(n, strings=level_0)]
        ),
        "v2 stream": encode_file(
            Header("stream", n, n, fingerprint, version=2), [Block(n, stream=stream, levels=[3])]
        ),
    }


def corrupt_codebook_files(codec: Codec) -> dict[str, bytes]:
    """Canonical strings of indices past the codewords (the escape), per digit and in a stream."""
    fingerprint = bytes.fromhex(codec.fingerprint)
    k = np.zeros((2, codec.latent_dims))
    k[:, 0] = [5, codec.loaded.codebooks[0].size]  # digit 1: index 16 of 16 codewords
    negative = k.copy()
    negative[1, 0] = -3
    stream_k = np.zeros((3, codec.latent_dims))
    stream_k[:, 0] = [1, 64, 2]  # 64 of level 1's 64 codewords
    coder = codec.coders[1]
    per_digit = Header("per-digit", 2, 2, fingerprint)
    return {
        "escape": encode_file(
            per_digit, [Block(2, strings=codec.encode_latents(k, 0), levels=[0])]
        ),
        "negative index": encode_file(
            per_digit, [Block(2, strings=codec.encode_latents(negative, 0), levels=[0])]
        ),
        "stream escape": encode_file(
            Header("stream", 3, 3, fingerprint),
            [Block(3, stream=coder.encode_stream(coder.to_symbols(stream_k)), levels=[1])],
        ),
    }


# Files decoded with one model in one Node process: latents and digits, or the error.
DECODE_OR_FAIL = """
import { loadModel } from "./mnistcodec.js";
import { readFileSync } from "node:fs";
const [model, files] = JSON.parse(readFileSync(0, "utf8"));
const m = await loadModel(model);
const out = {};
for (const file of files) {
  try {
    const r = m.decompress(readFileSync(file));
    out[file] = { latents: r.latents, images: Buffer.from(r.images).toString("base64") };
  } catch (e) { out[file] = { error: [e.constructor.name, e.kind, e.message] }; }
}
console.log(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? `${v}n` : v)));
"""


@pytest.fixture(scope="module")
def codebook_files(codebook_codec, codebook_digits, tmp_path_factory) -> dict[str, tuple]:
    """Python's good and corrupt vr-codebook files: ``name -> (bytes, what Node made of them)``."""
    folder = tmp_path_factory.mktemp("codebook-files")
    files = python_codebook_files(codebook_codec, codebook_digits[:20])
    files.update(corrupt_codebook_files(codebook_codec))
    paths = {name: folder / f"{name.replace(' ', '-')}.mnc" for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)
    decoded = run_script(
        DECODE_OR_FAIL, [str(model_path(CODEBOOK)), list(map(str, paths.values()))]
    )
    return {name: (data, decoded[str(paths[name])]) for name, data in files.items()}


@pytest.mark.parametrize("name", ["v3 mixed", "v2 mixed", "v1 per-digit", "v2 stream"])
def test_python_files_at_codebook_levels_decode_in_javascript(name, codebook_files, codebook_codec):
    data, js = codebook_files[name]
    images = np.frombuffer(base64.b64decode(js["images"]), np.uint8).reshape(-1, 28, 28)
    assert np.array_equal(images, decompress_bytes(codebook_codec, data))
    latents = [[as_int(v) for v in row] for row in js["latents"]]
    assert latents == decode_latents_bytes(codebook_codec, data).astype(np.int64).tolist()


@pytest.mark.parametrize("name", ["escape", "negative index", "stream escape"])
def test_an_index_past_the_codewords_is_corrupt_data_in_both_runtimes(
    name, codebook_files, codebook_codec
):
    data, js = codebook_files[name]
    with pytest.raises(FormatError) as info:
        decompress_bytes(codebook_codec, data)
    assert js["error"] == ["MnistCodecError", type(info.value).__name__, str(info.value)]
    assert "the level has" in str(info.value) and "the data is corrupt" in str(info.value)


def model_variant(data: bytes, edit) -> bytes:
    """A model file with ``edit(header, record, tensor data)`` applied, content hash recomputed."""
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    record = json.loads(header["__metadata__"]["mnistcodec"])
    body = bytearray(data[8 + length :])
    edit(header, record, body)
    record.pop("content_sha256", None)

    def pack(rec: dict) -> bytes:
        header["__metadata__"] = {"mnistcodec": json.dumps(rec, sort_keys=True)}
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + bytes(body)

    record["content_sha256"] = content_hash(pack(record), record)
    return pack(record)


def _record(key, value):
    return lambda header, record, body: record.__setitem__(key, value)


def _pixels_shape(header, record, body):
    header["codebook.level.1.pixels"]["shape"] = [32, 56, 28]  # the same bytes


def _pixel_flipped(header, record, body):
    body[header["codebook.level.3.pixels"]["data_offsets"][0] + 500] ^= 0x40


#: A bad version-2 model -> whether JavaScript words its error exactly as Python (after "m: ").
MODEL_VARIANTS = {
    "codebook_levels in version 1": (_record("format_version", 1), True),
    "version 3": (_record("format_version", 3), False),
    "no codebook levels": (_record("codebook_levels", []), True),
    "levels descending": (_record("codebook_levels", [1, 0]), True),
    "every level a codebook": (_record("codebook_levels", list(range(16))), True),
    "a level past the last": (_record("codebook_levels", [0, 1, 2, 3, 16]), True),
    "pixels of an unlisted level": (_record("codebook_levels", [0, 1, 2, 3]), False),
    "pixels of another shape": (_pixels_shape, True),
    "a codeword changed": (_pixel_flipped, False),
}
LOAD_ALL = """
import { loadModel } from "./mnistcodec.js";
import { readFileSync } from "node:fs";
const out = {};
for (const file of JSON.parse(readFileSync(0, "utf8"))) {
  try { await loadModel(file); out[file] = null; } catch (e) { out[file] = [e.kind, e.message]; }
}
console.log(JSON.stringify(out));
"""


def test_bad_version_2_models_give_python_s_errors(tmp_path):
    data = model_path(CODEBOOK).read_bytes()
    paths, expected = {}, {}
    for case, (edit, _) in MODEL_VARIANTS.items():
        variant = model_variant(data, edit)
        paths[case] = tmp_path / f"{case.replace(' ', '-')}.safetensors"
        paths[case].write_bytes(variant)
        with pytest.raises(ModelFileError) as info:
            load_model_bytes(variant, "m")
        expected[case] = str(info.value)
    errors = run_script(LOAD_ALL, [str(p) for p in paths.values()])
    for case, (_, same_words) in MODEL_VARIANTS.items():
        kind, message = errors[str(paths[case])]
        assert kind == "ModelFileError", (case, message)
        if same_words:
            assert expected[case] == f"m: {message}", case
    assert "model format version 3" in errors[str(paths["version 3"])][1]


def test_javascript_samples_at_a_codebook_level_are_codewords(js_codebook, codebook_codec):
    samples = np.frombuffer(base64.b64decode(js_codebook["samples"]), np.uint8).reshape(-1, 784)
    codewords = codebook_codec.loaded.codebooks[1].codewords.reshape(-1, 784)
    assert samples.shape == (6, 784)
    for digit in samples:
        assert (codewords == digit).all(axis=1).any()
