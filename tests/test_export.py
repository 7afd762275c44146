"""ONNX export: the exported graphs and tables decode the golden files as PyTorch does.

A shipped model is exported once; onnxruntime runs its synthesis graph on the
latents of a golden file and its analysis graph on the golden digits (MNIST
test digits 0-23), and the example of ``docs/onnx-export.md`` (onnxruntime,
numpy and constriction, no mnistcodec) decodes the golden files from the
exported files alone, the overflow vectors included.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import decode_latents_bytes, decompress_bytes
from mnistcodec.coding.onnx_export import OPSET, export_onnx
from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model
from mnistcodec.data import load_split, read_idx
from mnistcodec.errors import MnistCodecError

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install 'mnistcodec[onnx]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden"
MODEL = "seed-lmbda2000"
#: A shipped variable-rate model with one factorised prior (tests/test_mixture.py covers mixtures).
PLAIN_VR_MODEL = "vr-balanced"
FILES = {"analysis.onnx", "synthesis.onnx", "tables.json", "manifest.json"}


@pytest.fixture(scope="module")
def loaded():
    return resolve_model(MODEL)


@pytest.fixture(scope="module")
def exported(loaded, tmp_path_factory) -> Path:
    return export_onnx(loaded, tmp_path_factory.mktemp("export") / "seed-onnx")


@pytest.fixture(scope="module")
def golden_latents(loaded) -> np.ndarray:
    data = (GOLDEN_DIR / f"{MODEL}.per-digit.mnc").read_bytes()
    return decode_latents_bytes(Codec(loaded), data)


def run(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: inputs})[0]


def to_pixels(x_hat: np.ndarray) -> np.ndarray:
    pixels = np.nan_to_num(np.rint(x_hat * np.float32(255)), nan=0.0)
    return np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def test_the_export_holds_valid_graphs_with_a_dynamic_batch(exported, loaded):
    assert {p.name for p in exported.iterdir()} == FILES
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["fingerprint"] == loaded.fingerprint
    for role, names in (("analysis", ("x", "y")), ("synthesis", ("y_hat", "x_hat"))):
        graph = onnx.load(str(exported / f"{role}.onnx"))
        onnx.checker.check_model(graph)
        assert graph.opset_import[0].version >= OPSET
        (inp,), (out,) = graph.graph.input, graph.graph.output
        assert (inp.name, out.name) == names
        assert (manifest[role]["input"]["name"], manifest[role]["output"]["name"]) == names
        assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == digest


def test_onnx_synthesis_decodes_the_golden_file_within_one_grey_level(
    exported, loaded, golden_latents
):
    y_hat = golden_latents.astype(np.float32) + loaded.tables.offsets
    x_hat = run(exported / "synthesis.onnx", y_hat)
    with torch.no_grad():
        reference = loaded.model.synthesis_transform.reference_forward(torch.from_numpy(y_hat))
    np.testing.assert_allclose(x_hat, reference.numpy(), rtol=0, atol=1e-5)
    expected = read_idx(GOLDEN_DIR / f"{MODEL}.decoded.idx")
    difference = np.abs(to_pixels(x_hat).astype(np.int16) - expected)
    print(
        f"onnxruntime vs PyTorch: max {difference.max()} grey level(s), {np.count_nonzero(difference)} pixel(s)"
    )
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= expected.size // 1000
    one_at_a_time = np.concatenate(
        [run(exported / "synthesis.onnx", row[None]) for row in y_hat[:3]]
    )
    np.testing.assert_allclose(one_at_a_time, x_hat[:3], rtol=0, atol=1e-6)


def test_onnx_analysis_gives_the_golden_latents(exported, loaded, golden_latents):
    images = load_split("test").images[:24]
    x = (images.astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
    y = run(exported / "analysis.onnx", x)
    np.testing.assert_allclose(
        y, Codec(loaded, precision="fp32").latents(images).numpy(), rtol=0, atol=1e-4
    )
    k = np.rint(y - loaded.tables.offsets)
    np.testing.assert_array_equal(k, golden_latents)


def test_the_json_tables_are_the_model_files_tables(exported, loaded):
    tables = json.loads((exported / "tables.json").read_text())
    np.testing.assert_array_equal(np.asarray(tables["counts"], np.int32), loaded.tables.counts)
    np.testing.assert_array_equal(np.asarray(tables["lower"], np.int32), loaded.tables.lower)
    offsets = np.asarray(tables["offsets"], np.float64).astype(np.float32)
    assert offsets.tobytes() == loaded.tables.offsets.tobytes()
    assert tables["precision"] == loaded.tables.precision == 16
    assert tables["tail_mass"] == loaded.metadata["coding"]["tail_mass"]
    assert tables["fingerprint"] == loaded.fingerprint
    left = np.asarray(tables["coded_model"]["left"])
    assert left.shape == (loaded.tables.latent_dims, loaded.tables.width + 2)
    assert (left[:, 0] == 0).all() and (left[:, -1] == 1 << 24).all()
    assert (np.diff(left, axis=1) >= 1).all()
    # Row 0 as the worked example of docs/mnc-format.md lists it.
    assert left[0].tolist()[:6] == [0, 256, 513, 770, 8963, 1212676]


def documented_example() -> str:
    text = (ROOT / "docs" / "onnx-export.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    return code


@pytest.mark.parametrize("infix", ["", "v3."])
@pytest.mark.parametrize("mode", ["per-digit", "stream"])
def test_the_documented_example_decodes_the_golden_files(exported, mode, infix):
    code = documented_example()
    assert "mnistcodec" not in re.sub(r"#.*", "", code) and "torch" not in code
    namespace: dict = {}
    exec(compile(code, "docs/onnx-export.md", "exec"), namespace)
    digits = namespace["decode_mnc"](exported, GOLDEN_DIR / f"{MODEL}.{infix}{mode}.mnc")
    expected = read_idx(GOLDEN_DIR / f"{MODEL}.decoded.idx")
    assert digits.shape == expected.shape and digits.dtype == np.uint8
    assert np.abs(digits.astype(np.int16) - expected).max() <= 1
    overflow = json.loads((GOLDEN_DIR / "overflow.latents.json").read_text())
    latents, levels = namespace["decode_latents"](
        exported, GOLDEN_DIR / f"overflow.{infix}{mode}.mnc"
    )
    assert latents.tolist() == overflow["latents"]  # escapes of every kind, exactly
    assert set(levels.tolist()) == {0}


@pytest.fixture(scope="module")
def default_export(tmp_path_factory) -> Path:
    """The default model exported: the model of every file a user makes without naming one."""
    return export_onnx(resolve_model(DEFAULT_MODEL), tmp_path_factory.mktemp("export") / "default")


@pytest.mark.parametrize("mode", ["per-digit", "stream"])
def test_the_documented_example_decodes_the_default_models_files(default_export, mode, tmp_path):
    namespace: dict = {}
    exec(compile(documented_example(), "docs/onnx-export.md", "exec"), namespace)
    codec = Codec.from_model(DEFAULT_MODEL, precision="fp32")  # the reference the export follows
    # Its golden file (version 3).
    golden = GOLDEN_DIR / f"{DEFAULT_MODEL}.v3.{mode}.mnc"
    digits = namespace["decode_mnc"](default_export, golden)
    expected = read_idx(GOLDEN_DIR / f"{DEFAULT_MODEL}.decoded.idx")
    assert digits.shape == expected.shape and digits.dtype == np.uint8
    assert np.abs(digits.astype(np.int16) - expected).max() <= 1
    # Files compress writes with every default, and with rate control's level per digit.
    runs = [[]] if mode == "stream" else [[], ["--target-bits", "30"]]
    for extra in runs:
        out = tmp_path / f"made{len(extra)}.mnc"
        argv = ["compress", "--split", "test", "--index", "0:40", "-o", str(out), "-q", *extra]
        assert main(argv + (["--stream"] if mode == "stream" else [])) == 0
        data = out.read_bytes()
        if extra:
            assert data[66] == 1  # the block's levels: one per digit
        k, levels = namespace["decode_latents"](default_export, out)
        assert k.tolist() == decode_latents_bytes(codec, data).astype(np.int64).tolist()
        digits = namespace["decode_mnc"](default_export, out)
        library = decompress_bytes(codec, data)
        assert np.abs(digits.astype(np.int16) - library).max() <= 1
        assert (
            len(set(levels.tolist())) > 1
            if extra
            else set(levels.tolist()) == {codec.default_level}
        )


def test_an_existing_export_is_refused_without_force(exported, capsys):
    before = {p.name: p.read_bytes() for p in exported.iterdir()}
    assert main(["export", MODEL, "--onnx", str(exported)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert {p.name: p.read_bytes() for p in exported.iterdir()} == before


def test_force_replaces_only_an_export(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", MODEL, "--onnx", str(other), "--force"]) == 2
    assert "holds no mnistcodec export" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    out = tmp_path / "export"
    assert main(["export", MODEL, "--onnx", str(out)]) == 0
    (out / "tables.json").write_text("{}")
    assert main(["export", MODEL, "--onnx", str(out), "--force"]) == 0
    assert {p.name for p in out.iterdir()} == FILES
    assert json.loads((out / "tables.json").read_text())["precision"] == 16


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "no-such-model", "--onnx", "OUT"],
        ["export", "missing.safetensors", "--onnx", "OUT"],
        ["export", MODEL, "--onnx", "FILE"],
    ],
    ids=["unknown-name", "missing-file", "output-is-a-file"],
)
def test_bad_arguments_are_one_error_line(argv, tmp_path, capsys):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a in ("OUT", "FILE") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistcodec: error: ") and err.count("\n") == 1
    assert not (tmp_path / "OUT").exists()


def test_without_onnx_the_error_says_what_to_install(loaded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MnistCodecError, match=re.escape("pip install 'mnistcodec[onnx]'")):
        export_onnx(loaded, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_variable_rate_export_decodes_its_golden_file_at_every_level(tmp_path):
    from mnistcodec.coding.container import parse_header

    vr = resolve_model(PLAIN_VR_MODEL)
    out = export_onnx(vr, tmp_path / "vr-onnx")
    tables = json.loads((out / "tables.json").read_text())
    levels = tables["levels"]
    assert levels["count"] == vr.levels == len(levels["tables"]) == len(levels["gains"])
    for record, frozen in zip(levels["tables"], vr.level_tables, strict=True):
        assert record["counts"] == frozen.counts.tolist()
        assert record["offsets"] == [float(v) for v in frozen.offsets]
    codec = Codec(vr, precision="fp32")
    gains = np.asarray(levels["gains"], dtype=np.float32)
    offsets = np.asarray([t["offsets"] for t in levels["tables"]], dtype=np.float32)

    # The golden file's latents, at the level it stores, through the exported graph.
    data = (GOLDEN_DIR / f"{PLAIN_VR_MODEL}.per-digit.mnc").read_bytes()
    level = codec.default_level
    assert parse_header(data).version == 2
    k = decode_latents_bytes(codec, data).astype(np.float32)
    y_hat = (k + offsets[level]) / gains[level]
    digits = to_pixels(run(out / "synthesis.onnx", y_hat))
    expected = read_idx(GOLDEN_DIR / f"{PLAIN_VR_MODEL}.decoded.idx")
    assert np.abs(digits.astype(np.int16) - expected).max() <= 1

    # The analysis graph and the gains give the library's integer latents at every level.
    images = load_split("test").images[:24]
    y = run(out / "analysis.onnx", (images.astype(np.float32) / 255).reshape(-1, 1, 28, 28))
    for level in (0, 7, vr.levels - 1):
        k_onnx = np.rint(gains[level] * y - offsets[level])
        k_lib, _ = codec.analyse(images, level)
        assert np.mean(k_onnx == k_lib) > 0.999  # float sums may round a rare latent apart


@pytest.mark.parametrize("stem", ["level-2.v3.stream", "target.v3.per-digit"])
def test_a_codebook_model_export_decodes_its_codebook_levels(stem, tmp_path_factory):
    """``vr-codebook``: codewords in ``codebooks.u8``, and the documented example decodes
    its files at codebook levels and at levels mixing codebooks and the network."""
    loaded = resolve_model("vr-codebook")
    out = export_onnx(loaded, tmp_path_factory.mktemp("export") / "codebook")
    sizes = [loaded.codebooks[level].size for level in sorted(loaded.codebooks)]
    assert (out / "codebooks.u8").stat().st_size == 784 * sum(sizes)
    manifest = json.loads((out / "manifest.json").read_text())
    digest = hashlib.sha256((out / "codebooks.u8").read_bytes()).hexdigest()
    assert manifest["sha256"]["codebooks.u8"] == digest
    namespace: dict = {}
    exec(compile(documented_example(), "docs/onnx-export.md", "exec"), namespace)
    path = GOLDEN_DIR / f"vr-codebook.{stem}.mnc"
    k, levels = namespace["decode_latents"](out, path)
    codec = Codec(loaded, precision="fp32")
    assert k.tolist() == decode_latents_bytes(codec, path.read_bytes()).astype(np.int64).tolist()
    digits = namespace["decode_mnc"](out, path)
    expected = read_idx(GOLDEN_DIR / f"vr-codebook.{stem}.digits.idx")
    books = np.isin(levels, sorted(loaded.codebooks))
    assert books.any()
    np.testing.assert_array_equal(digits[books], expected[books])
    assert np.abs(digits.astype(np.int16) - expected).max() <= 1
