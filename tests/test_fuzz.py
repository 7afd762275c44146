"""A fast sample of the fuzz cases of ``tests/fuzz.py``, and its regression corpus.

The full run (10,000 cases per target) is ``python tests/fuzz.py``; here a few
hundred cases per target run with a fixed seed, and every input in
``tests/corpus/`` (crashers found by fuzzing, and hand-made tampered models)
is replayed: each must end in decoded digits, a loaded model, or one of our
own errors with a one-line message.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import fuzz
from mnistcodec.coding.api import Codec
from mnistcodec.coding.model_files import load_model_bytes, save_model
from mnistcodec.coding.range_coder import DecodeError
from mnistcodec.errors import ModelFileError
from mnistcodec.model.compression_model import ModelConfig
from mnistcodec.model.variable_rate import VariableRateModel
from mnistcodec.storage.model_container import CONTENT_KEY

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus"


@pytest.fixture(scope="module")
def mnc_fixture(tmp_path_factory):
    return fuzz.make_mnc_fixture(tmp_path_factory.mktemp("fuzz-mnc"))


@pytest.fixture(scope="module")
def model_seeds(tmp_path_factory):
    return fuzz.make_model_seeds(
        tmp_path_factory.mktemp("fuzz-model"), priors=("logistic", "deep-factorized")
    )


def _failures(report) -> str:
    return "\n".join(f"case {i} ({kind}): {detail}" for i, kind, detail, _ in report.failures)


def test_valid_seeds_decode_and_load(mnc_fixture, model_seeds):
    for name, data in mnc_fixture.seeds.items():
        expected = "error" if name in ("no-digits", "other-model") else "ok"
        assert fuzz.check_mnc(mnc_fixture, data).kind == expected, name
    for name, data in model_seeds.items():
        assert fuzz.check_model(data).kind == "ok", name


def test_fuzz_sample_mnc(mnc_fixture):
    report = fuzz.run_target(
        "mnc",
        400,
        seed=20261128,
        check=lambda data: fuzz.check_mnc(mnc_fixture, data),
        mutate=lambda rng: fuzz.mutate_mnc(rng, mnc_fixture),
        seeds=mnc_fixture.seeds,
        log=lambda _line: None,
    )
    assert report.cases == 400 and not report.failures, _failures(report)
    assert report.outcomes["ok"] > 0 and report.outcomes["DecodeError"] > 0


@pytest.fixture(scope="module")
def mixture_fixture(tmp_path_factory):
    """The mnc target's seeds written by an (untrained) mixture model with a conditioned decoder."""
    workdir = tmp_path_factory.mktemp("fuzz-mixture")
    torch.manual_seed(0)
    config = ModelConfig(arch="vr", mixture_components=4, conditioned_decoder=True)
    codec = Codec(save_model(VariableRateModel(config), workdir / "mixture.safetensors"))
    return fuzz.make_mnc_fixture(workdir, codec)


def test_fuzz_sample_mnc_of_a_mixture_model(mixture_fixture):
    report = fuzz.run_target(
        "mnc",
        300,
        seed=20261201,
        check=lambda data: fuzz.check_mnc(mixture_fixture, data),
        mutate=lambda rng: fuzz.mutate_mnc(rng, mixture_fixture),
        seeds=mixture_fixture.seeds,
        log=lambda _line: None,
    )
    assert report.cases == 300 and not report.failures, _failures(report)
    assert report.outcomes["ok"] > 0


def test_random_strings_under_a_mixture_decode_or_fail_cleanly(mixture_fixture):
    codec = mixture_fixture.codec
    rng = np.random.default_rng(7)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(300):
        data = rng.bytes(int(rng.integers(0, 12)))
        try:
            codec.decompress([data], levels=int(rng.integers(0, codec.levels)))
            outcomes["decoded"] += 1
        except DecodeError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 300


def test_fuzz_sample_model(model_seeds):
    report = fuzz.run_target(
        "model",
        80,
        seed=20261128,
        check=fuzz.check_model,
        mutate=lambda rng: fuzz.mutate_model(rng, model_seeds),
        seeds=model_seeds,
        systematic=False,
        log=lambda _line: None,
    )
    assert report.cases == 80 and not report.failures, _failures(report)


def test_truncation_at_every_length_of_a_model_header(model_seeds):
    data = model_seeds["logistic"]
    end = 8 + struct.unpack("<Q", data[:8])[0]
    for n in range(0, end + 8, 7):
        with pytest.raises(ModelFileError):
            load_model_bytes(data[:n])


CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.name.startswith(("mnc-", "model-")))


def test_the_corpus_is_there_and_small():
    assert len(CORPUS_FILES) >= 10
    assert sum(p.stat().st_size for p in CORPUS_FILES) < 400_000


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_regressions(path, mnc_fixture):
    target, data = fuzz.load_corpus_entry(path)
    if target == "mnc":
        # As written, and addressed to this fixture's model (so that inputs
        # found behind the model check reach the decoder here too).
        for variant in (data, fuzz.retarget(data, mnc_fixture.codec.fingerprint)):
            outcome = fuzz.run_one(
                lambda d: fuzz.check_mnc(mnc_fixture, d), variant, timeout=20, memory_mb=512
            )
            assert outcome.kind != "failure", outcome.detail
    else:
        outcome = fuzz.run_one(fuzz.check_model, data, timeout=20, memory_mb=512)
        assert outcome.kind != "failure", outcome.detail


@pytest.mark.parametrize(
    "name",
    ["model-fingerprint-mismatch", "model-synthesis-tampered", "model-analysis-tampered"],
)
def test_tampered_models_in_the_corpus_are_refused(name):
    _, data = fuzz.load_corpus_entry(CORPUS / f"{name}.safetensors.gz")
    with pytest.raises(ModelFileError, match="integrity"):
        load_model_bytes(data)


def _edited(data: bytes, record_edit=None, tensor_edit=None, rehash="fix") -> bytes:
    header, record, tensors = fuzz.split_model(data)
    if record_edit:
        record = dict(record)
        record_edit(record)
    if tensor_edit:
        tensors = tensor_edit(header, tensors)
    return fuzz.join_model(header, record, tensors, rehash)


def _flip_in(name: str):
    def edit(header: dict, tensors: bytes) -> bytes:
        start, _ = header[name]["data_offsets"]
        out = bytearray(tensors)
        out[start + 1] ^= 0x40
        return bytes(out)

    return edit


def test_fingerprint_and_content_hash_are_both_checked(model_seeds):
    data = model_seeds["logistic"]

    def other_fingerprint(record):
        record["fingerprint"] = "0" * 64

    with pytest.raises(ModelFileError, match="stored fingerprint 0000"):
        load_model_bytes(_edited(data, record_edit=other_fingerprint))
    synthesis = _flip_in("model.synthesis_transform.fc_1.weight")
    with pytest.raises(ModelFileError, match="integrity check: stored fingerprint"):
        load_model_bytes(_edited(data, tensor_edit=synthesis))
    # The fingerprint covers what the decoder needs; the content hash the rest.
    analysis = _flip_in("model.analysis_transform.fc_1.weight")
    with pytest.raises(ModelFileError, match="contents do not match their stored SHA-256"):
        load_model_bytes(_edited(data, tensor_edit=analysis, rehash="keep"))
    # A file written before content hashes existed is checked by its fingerprint alone.
    assert load_model_bytes(_edited(data, rehash="drop")).fingerprint
    edited = _edited(data, tensor_edit=analysis, rehash="drop")
    assert CONTENT_KEY not in json.loads(
        json.loads(edited[8 : 8 + struct.unpack("<Q", edited[:8])[0]])["__metadata__"]["mnistcodec"]
    )


def test_config_sizes_are_bounded_before_anything_is_allocated(model_seeds):
    data = model_seeds["logistic"]
    for value in (10**12, 2**40, 0, -1, True, 8.0, "8", None):

        def edit(record, value=value):
            record["config"] = {**record["config"], "latent_dims": value}

        with pytest.raises(ModelFileError, match="latent_dims"):
            load_model_bytes(_edited(data, record_edit=edit))
    for bad in ([1, 2], "config", None):

        def edit(record, bad=bad):
            record["config"] = bad

        with pytest.raises(ModelFileError, match="invalid configuration"):
            load_model_bytes(_edited(data, record_edit=edit))
    for precision in (float("inf"), float("nan"), 1e308, "16", None, 2**70):

        def edit(record, precision=precision):
            record["coding"] = {**record["coding"], "precision": precision}

        with pytest.raises(ModelFileError, match="precision"):
            load_model_bytes(_edited(data, record_edit=edit))


def test_weights_of_other_dtypes_are_refused(model_seeds):
    header, record, tensors = fuzz.split_model(model_seeds["logistic"])
    name = "model.synthesis_transform.conv_2.bias"
    header = json.loads(json.dumps(header))
    assert header[name]["dtype"] == "F16"
    header[name]["dtype"] = "BF16"
    with pytest.raises(ModelFileError, match="expected float32 or float16"):
        load_model_bytes(fuzz.join_model(header, record, tensors, "fix"))


def test_loading_runs_no_code_from_the_file(tmp_path):
    """A pickle that would run code is refused as not a model file, and its code never runs."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Payload()))
    torch_file = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, torch_file)
    from mnistcodec.coding.model_files import load_model

    for path in (evil, torch_file):
        with pytest.raises(ModelFileError, match="not .*model file"):
            load_model(path)
    assert not marker.exists()


def test_no_pickle_anywhere_in_the_package():
    sources = (ROOT / "src" / "mnistcodec").rglob("*.py")
    banned = (
        "torch.load",
        "import pickle",
        "pickle.load",
        "np.load(",
        "allow_pickle",
        "torch.save",
    )
    found = [
        f"{path.relative_to(ROOT)}: {word}"
        for path in sources
        for word in banned
        if word in path.read_text(encoding="utf-8")
    ]
    assert found == []
