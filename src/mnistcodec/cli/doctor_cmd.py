"""``doctor``: this machine's CPU and libraries, the inference engines and each model's choice."""

from __future__ import annotations

import argparse
import json


def format_doctor(record: dict) -> str:
    """Human-readable lines for :func:`mnistcodec.coding.calibration.doctor_record`."""
    machine = record["machine"]
    lines = [
        f"cpu               {machine['cpu']}",
        f"cpu flags         {' '.join(machine['cpu_flags']) or '-'}",
        f"bf16 units        {'matrix (AMX)' if record['bf16_matrix_units'] else 'vector (AVX512-BF16)' if record['bf16_vector_units'] else 'none'}",
        f"libraries         torch {machine['torch']}, oneDNN {machine['onednn'] or '?'}, "
        f"onnxruntime {machine['onnxruntime'] or 'not installed'}, numpy {machine['numpy']}",
        f"threads           {machine['threads']}",
        f"kernel isa        {', '.join(f'{k}={v}' for k, v in machine['kernel_caps'].items()) or '-'}",
        f"engines           {', '.join(record['engines'])} "
        f"(calibration measures {', '.join(record['calibrated_engines'])})",
        f"engine cache      {record['cache']}",
    ]
    if record["override"]:
        lines.append(f"override          {json.dumps(record['override'])}")
    for name, model in record["models"].items():
        choice = model["choice"]
        lines.append(
            f"model {name}: encoder {choice['encoder']}, decoder {choice['decoder']}"
            + (f" (sub-batch {choice['chunk']})" if "onnxruntime" in choice.values() else "")
            + f" [{model['source']}{', ' + model['when'] if model['when'] else ''}]"
        )
        for side, runs in (model["measured_digits_per_s"] or {}).items():
            cells = [
                f"{label} {run['digits_per_s']:,.0f}/s"
                if "digits_per_s" in run
                else f"{label} {'not conformant' if 'conformant' in run else 'failed'}"
                for label, run in runs.items()
            ]
            lines.append(f"  {side:<8} {', '.join(cells)}")
    return "\n".join(lines)


def doctor_handler(args: argparse.Namespace) -> int:
    # Lazy imports here: the engines pull in PyTorch; the CLI starts without it.
    from mnistcodec.coding.calibration import doctor_record  # lazy: PyTorch
    from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model  # lazy: PyTorch

    names = args.models or [DEFAULT_MODEL]
    record = doctor_record({name: resolve_model(name) for name in names}, measure=args.calibrate)
    print(json.dumps(record, indent=1) if args.json else format_doctor(record))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        description=(
            "Show this machine's CPU, libraries and inference engines, and the engine that "
            "--precision auto runs for each model (measured once per machine and model, "
            "cached; MNISTCODEC_ENGINE overrides it). See docs/precision.md."
        ),
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model files or shipped names (default: the default model)",
    )
    p.add_argument(
        "--calibrate", action="store_true", help="measure the engines now and cache the choice"
    )
    p.add_argument("--json", action="store_true", help="the record as JSON")
    p.set_defaults(handler=doctor_handler)
