"""The lab notebook: it runs top to bottom under the tiny protocol, and is committed stripped.

The executed notebook is checked on what it computed: after its last cell the
test runs one more cell in the same kernel that prints the notebook's own
variables as JSON (the strings it wrote, the digits it decoded, the samples
it drew), and re-derives them here from the model file the notebook trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.model_files import load_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.lab.protocol import LAB_BATCH, notebook_protocol

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "lab.ipynb"
STRIP = ROOT / "scripts" / "strip_notebook.py"

PROBE = """
import json
print(json.dumps({
    "protocol": protocol.name,
    "model_path": str(main_trial.model_path),
    "train_limit": main_trial.spec.train.limit,
    "strings_hex": [s.hex() for s in strings],
    "entropies": [float(v) for v in entropies],
    "string_bits": [int(v) for v in string_bits],
    "psnr": [float(v) for v in psnr],
    "reconstructions": reconstructions.tolist(),
    "decoded_equals_reconstruction": decoded_equals_reconstruction,
    "samples": samples.tolist(),
    "lambdas_trained": sorted(t.spec.model.lmbda for t in lambda_trials),
}))
"""


def kernel_environment(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernel that is this interpreter, with this checkout's ``src`` importable."""
    spec_dir = tmp / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (mnistcodec tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp / "ipython"))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "src"), path])))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("MNISTCODEC_NOTEBOOK_PROTOCOL", "tiny")
    monkeypatch.setenv("MNISTCODEC_NOTEBOOK_TRIALS", str(tmp / "trials"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed under the tiny protocol, and the probe cell's JSON."""
    tmp = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as monkeypatch:
        kernel_environment(tmp, monkeypatch)
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=300,
            resources={"metadata": {"path": str(tmp)}},
        )
        client.execute()
    return nb, json.loads(nb.cells[-1].outputs[0]["text"])


def outputs_of(nb, kind: str) -> list:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if kind in o]


def test_notebook_runs_every_cell_and_draws_inline(executed):
    nb, probe = executed
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert not [o for c in code_cells for o in c.outputs if o["output_type"] == "error"]
    images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 12
    assert probe["protocol"] == "tiny" and probe["train_limit"] <= 1000
    assert probe["lambdas_trained"] == sorted(notebook_protocol("tiny").lmbdas)


def test_notebook_codes_real_strings_that_decode_to_the_reconstruction(executed):
    nb, probe = executed
    strings = [bytes.fromhex(h) for h in probe["strings_hex"]]
    originals = load_split("test").images[LAB_BATCH]
    codec = Codec(load_model(probe["model_path"]))

    # The compress cell prints the first string and the bits it reports.
    printed = "".join(
        o.get("text", "")
        for c in nb.cells
        if "codec.compress(originals)" in c.source
        for o in c.outputs
    )
    assert f"0x{probe['strings_hex'][0]}" in printed
    assert f"{probe['string_bits'][0]} bits" in printed
    assert probe["string_bits"] == [string_bits(s) for s in strings]

    # The notebook's strings are this model's strings; they decode to its reconstruction.
    again, info = codec.compress(originals)
    assert again == strings
    np.testing.assert_allclose(info, probe["entropies"])
    reconstructions = np.asarray(probe["reconstructions"], dtype=np.uint8)
    assert probe["decoded_equals_reconstruction"] is True
    np.testing.assert_array_equal(codec.decompress(strings), reconstructions)
    np.testing.assert_array_equal(codec.reconstruct(originals), reconstructions)
    np.testing.assert_allclose(probe["psnr"], metrics.psnr_per_image(originals, reconstructions))

    samples = np.asarray(probe["samples"], dtype=np.uint8)
    np.testing.assert_array_equal(
        samples, codec.sample(16, seed=notebook_protocol("tiny").seed, nbytes=8)
    )


def test_committed_notebook_is_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)
    assert not any(key in c.metadata for c in nb.cells for key in ("execution", "ExecuteTime"))
    check = subprocess.run(
        [sys.executable, str(STRIP), "--check", str(NOTEBOOK)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_strip_script_removes_outputs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.9"}
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)

    def strip(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(STRIP), *args, str(path)]
        return subprocess.run(command, capture_output=True, text=True)

    assert strip("--check").returncode == 1
    assert strip().returncode == 0
    assert strip("--check").returncode == 0
    assert path.read_bytes() == NOTEBOOK.read_bytes()


def test_unknown_notebook_protocol_is_a_clear_error():
    with pytest.raises(InputError, match="unknown notebook protocol 'huge'.*tiny"):
        notebook_protocol("huge")
