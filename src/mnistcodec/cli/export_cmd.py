"""``export`` command: a model's transforms as ONNX and its coding tables as JSON, or (``--web``)
the playground as a static folder that codes in the page with mnistcodec.js."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnistcodec.cli.common import note
from mnistcodec.coding.zoo import DEFAULT_MODEL


def export_handler(args: argparse.Namespace) -> int:
    # Lazy imports here: the export pulls in PyTorch; the CLI starts without it.
    from mnistcodec.coding.onnx_export import check_export_dir, export_onnx  # lazy: PyTorch
    from mnistcodec.coding.zoo import resolve_model  # lazy: PyTorch

    if args.web is not None:
        return _export_web(args, resolve_model)
    check_export_dir(args.onnx, force=args.force)
    loaded = resolve_model(args.model, notify=note)
    out = export_onnx(loaded, args.onnx, force=args.force)
    print(f"exported {args.model} (fingerprint {loaded.fingerprint[:16]}) to {out}/")
    print("  analysis.onnx, synthesis.onnx, tables.json, manifest.json")
    return 0


def _export_web(args: argparse.Namespace, resolve_model) -> int:
    # Lazy, as the ONNX export: the model loader pulls in PyTorch.
    from mnistcodec.playground.web_export import check_web_dir, export_web

    check_web_dir(args.web, force=args.force)
    loaded = resolve_model(args.model, notify=note)
    name = Path(str(args.model)).name.removesuffix(".safetensors")
    out = export_web(loaded, name, args.web, force=args.force)
    print(f"exported {args.model} (fingerprint {loaded.fingerprint[:16]}) to {out}/")
    print("  index.html, mnistcodec.js, backend.js, the model, manifest.json: serve the folder")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        description=(
            "Write the analysis and synthesis transforms as ONNX (opset 17, dynamic batch), "
            "the coding tables as JSON and a manifest into directory DIR "
            "(see docs/onnx-export.md; needs: pip install 'mnistcodec[onnx]'), or with --web "
            "the playground page, mnistcodec.js and the model as a static folder that needs no "
            "server (see docs/javascript.md)."
        ),
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"a model file or a shipped model's name (default: {DEFAULT_MODEL})",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--onnx", metavar="DIR", help="the directory to write (must be new)")
    target.add_argument(
        "--web", metavar="DIR", help="write the static playground into DIR (must be new)"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier export in DIR")
    p.set_defaults(handler=export_handler)
