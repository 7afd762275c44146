"""``export`` command: a model's transforms as ONNX and its coding tables as JSON."""

from __future__ import annotations

import argparse

from mnistcodec.cli.common import note
from mnistcodec.coding.zoo import DEFAULT_MODEL


def export_handler(args: argparse.Namespace) -> int:
    # Lazy imports here: the export pulls in PyTorch; the CLI starts without it.
    from mnistcodec.coding.onnx_export import check_export_dir, export_onnx  # lazy: PyTorch
    from mnistcodec.coding.zoo import resolve_model  # lazy: PyTorch

    check_export_dir(args.onnx, force=args.force)
    loaded = resolve_model(args.model, notify=note)
    out = export_onnx(loaded, args.onnx, force=args.force)
    print(f"exported {args.model} (fingerprint {loaded.fingerprint[:16]}) to {out}/")
    print("  analysis.onnx, synthesis.onnx, tables.json, manifest.json")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        description=(
            "Write the analysis and synthesis transforms as ONNX (opset 17, dynamic batch), "
            "the coding tables as JSON and a manifest into directory DIR "
            "(see docs/onnx-export.md). Needs: pip install 'mnistcodec[onnx]'."
        ),
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"a model file or a shipped model's name (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--onnx", required=True, metavar="DIR", help="the directory to write (must be new)"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier export in DIR")
    p.set_defaults(handler=export_handler)
