"""Start-up: ``--version``, ``--help`` and ``inspect`` run without importing PyTorch.

Each command's module is imported only when that command runs
(:data:`mnistcodec.cli.COMMANDS`); these tests look at ``sys.modules`` in a
fresh interpreter, never at a clock.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnistcodec.cli import COMMANDS, build_parser

GOLDEN = Path(__file__).resolve().parent / "golden" / "seed-lmbda2000.per-digit.mnc"
PROBE = """
import contextlib, io, json, sys
from mnistcodec.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        status = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        status = exc.code
heavy = [m for m in ("torch", "matplotlib", "safetensors", "constriction", "PIL") if m in sys.modules]
print(json.dumps({"status": status, "heavy": heavy, "out": out.getvalue()}))
"""


def run_probe(argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["inspect", str(GOLDEN)], ["inspect", "--help"]]
)
def test_light_commands_import_no_pytorch(argv):
    result = run_probe(argv)
    assert result["status"] in (0, None)
    assert result["heavy"] == []
    assert result["out"]


def test_help_lists_every_command():
    out = run_probe(["--help"])["out"]
    for command, (_, help_text) in COMMANDS.items():
        assert command in out and help_text.split()[0] in out


def test_a_heavy_command_still_parses_in_full():
    args = build_parser(["train", "--prior", "deep-factorized"]).parse_args(
        ["train", "--prior", "deep-factorized"]
    )
    assert args.prior == "deep-factorized" and args.handler.__name__ == "train_handler"


class _Recorder:
    def __init__(self) -> None:
        self.names: list[str] = []

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        assert "help" not in kwargs, f"{name}: its one-line help belongs in COMMANDS"
        self.names.append(name)
        return argparse.ArgumentParser(add_help=False)


def test_the_command_table_names_exactly_what_the_modules_register():
    registered = {}
    for module_name in sorted({module for module, _ in COMMANDS.values()}):
        recorder = _Recorder()
        importlib.import_module(module_name).register(recorder)
        registered.update(dict.fromkeys(recorder.names, module_name))
    assert registered == {command: module for command, (module, _) in COMMANDS.items()}


def test_the_light_name_lists_match_the_registries():
    from mnistcodec.model.names import ARCHITECTURE_NAMES, PRIOR_NAMES
    from mnistcodec.model.priors import PRIORS
    from mnistcodec.model.transforms import ARCHITECTURES
    from mnistcodec.model.variable_rate import ARCH

    assert tuple(sorted(PRIORS)) == PRIOR_NAMES
    assert tuple(sorted({*ARCHITECTURES, ARCH})) == ARCHITECTURE_NAMES
