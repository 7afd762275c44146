"""Command-line interface: a thin layer over the library.

Each command group lives in its own module exposing ``register(subparsers)``;
every handler is a function ``(args) -> int`` that calls one library function
and prints its result. Options and positional arguments come in any order
(``compress vr --fit photo.png -o x.mnc``; ``--`` before a name that starts
with ``-``), and a usage error shows the command's own usage. When a report
cannot be written after an output file was written whole, the error says so. Errors of the :class:`MnistCodecError` family are printed
on one line (``mnistcodec: error: ...``) with exit status 2; no traceback. So
are failed writes (a full disk, a closed standard output). SIGINT, SIGTERM and
SIGHUP stop a command cleanly (no temporary file is left) with status 128 + the
signal number. Control characters in messages and in reports on standard
output are printed as ``\\xNN``, never sent to the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import signal
import sys
from collections.abc import Iterator

from mnistcodec import __version__
from mnistcodec.errors import MnistCodecError, OutputError
from mnistcodec.storage.stdout import StdoutWriter, stdout_failed

#: Every command: its module (which registers its arguments) and its one-line help, given
#: here only, so that ``--help`` lists every command without importing any module.
COMMANDS = {
    "data": ("mnistcodec.cli.data_cmd", "inspect and fetch the datasets"),
    "train": ("mnistcodec.cli.model_cmd", "train a model with the rate-distortion Lagrangian"),
    "evaluate": ("mnistcodec.cli.model_cmd", "rate, PSNR and distortion of a model on a split"),
    "summary": ("mnistcodec.cli.model_cmd", "layers, output shapes and parameter counts"),
    "models": ("mnistcodec.cli.model_cmd", "list the pretrained models that ship with the package"),
    "codebooks": (
        "mnistcodec.cli.model_cmd",
        "make a variable-rate model's lowest levels whole-digit codebooks (K-means)",
    ),
    "compress": ("mnistcodec.cli.coding_cmd", "compress digits into a .mnc file"),
    "decompress": ("mnistcodec.cli.coding_cmd", "decode a .mnc file into PNGs or an IDX file"),
    "inspect": ("mnistcodec.cli.inspect_cmd", "header and sizes of a .mnc file (no model needed)"),
    "sample": ("mnistcodec.cli.coding_cmd", "decode random bytes into digits (generative use)"),
    "sweep": (
        "mnistcodec.cli.experiment_cmd",
        "train and evaluate a grid of models (cached, resumable, parallel)",
    ),
    "baselines": (
        "mnistcodec.cli.experiment_cmd",
        "classical codecs (JPEG, JPEG 2000, WebP, AVIF, JPEG XL, PNG) on test digits",
    ),
    "report": (
        "mnistcodec.cli.experiment_cmd",
        "the lab report: train, code, compare and plot; writes OUT/index.html",
    ),
    "export": (
        "mnistcodec.cli.export_cmd",
        "write a model's transforms as ONNX and its coding tables as JSON",
    ),
    "serve": (
        "mnistcodec.cli.serve_cmd",
        "the playground: draw a digit and watch its bits (local web app and JSON API)",
    ),
    "doctor": ("mnistcodec.cli.doctor_cmd", "this machine's engines and each model's choice"),
}


class _OneCommand:
    """Stands in for the subparsers while a module registers: keeps one command, drops the rest."""

    def __init__(self, subparsers: argparse._SubParsersAction, command: str) -> None:
        self.subparsers, self.command = subparsers, command

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if name == self.command:
            kwargs["help"] = COMMANDS[name][1]
            return self.subparsers.add_parser(name, **kwargs)
        return argparse.ArgumentParser(add_help=False)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser; given ``argv``, only the command it names imports its module.

    Every other command is listed by name and help only, so ``--help``,
    ``--version`` and light commands such as ``inspect`` never import PyTorch.
    Without ``argv`` every command is registered in full.
    """
    parser = argparse.ArgumentParser(
        prog="mnistcodec",
        description="Learned lossy compression of MNIST-style digits.",
    )
    parser.add_argument("--version", action="version", version=f"mnistcodec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    invoked = next((w for w in argv or [] if not w.startswith("-")), None)
    for command, (module_name, help_text) in COMMANDS.items():
        if argv is not None and command != invoked:
            subparsers.add_parser(command, help=help_text)
            continue
        # The command's own module, imported only when it runs (some load PyTorch).
        importlib.import_module(module_name).register(_OneCommand(subparsers, command))
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, so no temporary file is left."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _termination_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` while a command runs (unless ignored)."""
    saved = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(signum) == signal.SIG_DFL:
                saved[signum] = signal.signal(signum, _terminate)
        except ValueError:  # not the main thread: signals stay as they are
            pass
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape sequences) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class _PrintableText:
    """Standard output while a command runs.

    Text is written with control characters as ``\\xNN`` (file names reach
    reports); binary data (``.buffer``) is written whole or not at all.
    """

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable(text))

    @property
    def buffer(self) -> StdoutWriter:
        """The binary stream, every write checked whole (-o - output)."""
        return StdoutWriter(self._stream.buffer)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _error(message: str) -> int:
    print(f"mnistcodec: error: {printable(message)}", file=sys.stderr)
    return 2


def _silence_stdout() -> None:
    """Point a failed standard output at /dev/null, so exiting does not fail on it again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


#: Output files this run has written whole (said when the report then fails).
_written: list[str] = []


def note_written(path: str | os.PathLike) -> None:
    """Record that ``path`` was written completely (``-``, standard output, is not a file)."""
    if os.fspath(path) != "-":
        _written.append(os.fspath(path))


def _stdout_message(error: MnistCodecError) -> str:
    """A failed standard output, and what happened to the files already written."""
    message = str(error)
    if _written:
        message = message.replace("; the output is incomplete", "")
        files = ", ".join(_written)
        message += f"; only the report was lost: {files} {'is' if len(_written) == 1 else 'are'} written completely"
    return message


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse a command line, options and positional arguments in any order.

    The command's own parser reads everything after the command name
    (``parse_intermixed_args``), so ``compress vr --fit photo.png -o x.mnc`` and
    ``compress vr -o x -- -dash.png`` work, and an error shows that command's usage.
    """
    parser = build_parser(argv)
    index = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    subparsers = next(
        (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
    )
    if index is None or subparsers is None or argv[index] not in subparsers.choices:
        return parser.parse_args(argv)
    if argv[:index]:
        parser.parse_args(argv[:index])  # top-level options only: --help, --version
    command = subparsers.choices[argv[index]]
    if any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
        return parser.parse_args(argv)  # a command of commands (data info): argparse's order
    args = command.parse_intermixed_args(argv[index + 1 :])
    args.command = argv[index]
    return args


def _parse_or_exit(argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status of ``--help``, ``--version`` or a usage error.

    argparse prints help and ignores a failed write; the text is gathered here
    and written afterwards, so a full disk or a closed pipe gives status 2 and
    one line of error instead of 0.
    """
    stdout, gathered = sys.stdout, io.StringIO()
    sys.stdout = gathered
    try:
        return parse_arguments(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    finally:
        sys.stdout = stdout
    try:
        stdout.write(gathered.getvalue())
        stdout.flush()
    except OSError as exc:
        _silence_stdout()
        return _error(str(stdout_failed(exc)))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _written.clear()
    args = _parse_or_exit(argv)
    if isinstance(args, int):
        return args
    stdout = sys.stdout
    sys.stdout = _PrintableText(stdout)
    try:
        with _termination_signals():
            status = int(args.handler(args) or 0)
            sys.stdout.flush()
            return status
    except MnistCodecError as exc:
        if isinstance(exc, OutputError) and "standard output" in str(exc):
            _silence_stdout()
            return _error(_stdout_message(exc))
        return _error(str(exc))
    except KeyboardInterrupt:
        print("mnistcodec: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        name = signal.Signals(exc.signum).name
        print(f"mnistcodec: terminated by {name}; no output file was written", file=sys.stderr)
        return 128 + exc.signum
    except OSError as exc:
        if exc.filename is None:
            _silence_stdout()
            return _error(_stdout_message(stdout_failed(exc)))
        return _error(f"{exc.filename}: {exc.strerror or exc}")
    finally:
        sys.stdout = stdout
