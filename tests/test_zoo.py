"""Shipped pretrained models: they load, match their manifest and code round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mnistcodec.coding.api import Codec
from mnistcodec.coding.zoo import (
    DEFAULT_MODEL,
    MAX_SHIPPED_BYTES,
    PRETRAINED_DIR,
    resolve_model,
    shipped_models,
)
from mnistcodec.data import load_split
from mnistcodec.errors import ModelFileError

MANIFEST = json.loads((PRETRAINED_DIR / "MANIFEST.json").read_text())
SHIPPED = sorted(shipped_models())


def test_every_manifest_entry_ships():
    assert SHIPPED and set(SHIPPED) == set(MANIFEST)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_matches_manifest_and_codes_round_trip(name, test_digits):
    loaded = resolve_model(name)
    entry = MANIFEST[name]
    assert loaded.fingerprint == entry["fingerprint"]
    assert (PRETRAINED_DIR / f"{name}.safetensors").stat().st_size <= MAX_SHIPPED_BYTES
    assert loaded.metadata["training_command"].startswith("mnistcodec train")
    assert loaded.metadata["dataset_sha256"]
    codec = Codec(loaded)
    digits = test_digits[:32]
    strings, info = codec.compress(digits)
    assert np.array_equal(codec.decompress(strings), codec.reconstruct(digits))
    recorded = loaded.metadata["evaluation"]
    # A few digits are a noisy estimate of the recorded whole-test-set figure.
    assert (
        abs(np.mean([8 * len(s) for s in strings]) - recorded["string_bits"])
        < 0.5 * recorded["string_bits"]
    )


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ModelFileError, match="no shipped model"):
        resolve_model("no-such-model")


def test_models_command_lists_shipped_models():
    proc = subprocess.run(
        [sys.executable, "-m", "mnistcodec", "models"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED:
        assert name in proc.stdout
    # Every model's figures in the same units, measured the same way: bit strings (.mnc
    # version 3), with the byte strings beside them in the record; a variable-rate model's
    # label names the level and lambda its figures are for.
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line[:1].isalpha()}
    for name in SHIPPED:
        record = resolve_model(name).metadata["evaluation"]
        # Every shipped record is measured in bit strings, the byte strings beside them.
        assert record["string_bits"] < record["byte_string_bits"], name
        figures = f"strings {record['string_bits']:.2f} bits (byte strings {record['byte_string_bits']:.2f})"
        assert figures in lines[name]
        if "level" in record:
            assert f"level {record['level']}, lambda {record['lmbda']:.0f}," in lines[name]
            assert "lambda=" not in lines[name]
    default = resolve_model(DEFAULT_MODEL).model
    reference = default.reference_level
    assert f"level {reference}, lambda {default.lambdas[reference]:.0f}," in lines[DEFAULT_MODEL]


def test_models_check_compares_a_record_in_the_string_kind_it_was_recorded_in(tmp_path):
    """An older record (no ``byte_string_bits``) holds byte strings; a newer one, bit strings."""
    import shutil

    from mnistcodec.coding.model_files import update_metadata
    from mnistcodec.experiments.shipped import check_shipped

    images = load_split("test").images
    record = resolve_model("seed-lmbda2000").metadata["evaluation"]
    copy = tmp_path / "seed.safetensors"
    shutil.copy(PRETRAINED_DIR / "seed-lmbda2000.safetensors", copy)
    # A record of the older form: byte strings as string_bits, no byte_string_bits.
    older = {k: v for k, v in record.items() if k != "byte_string_bits"}
    update_metadata(copy, {"evaluation": {**older, "string_bits": record["byte_string_bits"]}})
    old = check_shipped(str(copy), images)
    assert all(same for _, _, same in old.values()), old
    # The byte strings' figure claimed as bit strings no longer holds.
    update_metadata(copy, {"evaluation": {**record, "string_bits": record["byte_string_bits"]}})
    recorded, measured, same = check_shipped(str(copy), images)["string_bits"]
    assert not same and measured < recorded - 2
