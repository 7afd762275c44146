"""BD-rates of the variable-rate model against the improved models and the seed.

The variable-rate curves are ``mnistcodec evaluate MODEL --all-levels --json``
(real per-digit strings on all 10,000 test digits, one point per level). The
anchors are the separately trained models of ``bench/improved_bdrate.py``
(``bench/results/improved_bdrate.json``: seed and improved at lambda 300,
500, 1000, 2000, 5 epochs each) and an improved model at lambda 4000 trained
the same way (``mnistcodec train --preset improved --lmbda 4000``, then
``mnistcodec evaluate --json``)::

    python bench/vr_bdrate.py --improved-4000 runs/v3/improved-4000.json \\
        --vr vr-5-epochs:5:runs/v3/vr-e5-levels.json --vr vr:10:runs/v3/vr-levels.json
    python bench/vr_bdrate.py --from-json bench/results/vr_bdrate.json
    python bench/vr_bdrate.py --from-json bench/results/vr_bdrate.json --shipped vr-codebook:82

Prints and writes (``bench/results/vr_bdrate.json`` and the section of
``BENCHMARKS.md`` between ``<!-- vr:start -->`` and ``<!-- vr:end -->``) the
BD-rate of each variable-rate curve at equal PSNR and at equal MAD against
the improved curve (lambda 300-4000) and the seed curve (300-2000), and
against each variable-rate curve of a smaller training budget (the gain bought
by more epochs), with
:func:`mnistcodec.experiments.bdrate.preset_bd_rates` (pchip, on string bits:
the bit strings of ``.mnc`` version 3). Every variable-rate level enters the
fit; the BD-rate integrates over the quality range both curves cover, that is
the anchor's lambda range. A second table gives the BD-rates against the
anchors under the other rate measures of the same evaluations: the byte
strings of ``.mnc`` versions 1 and 2 (``byte_string_bits``) and the
information content (``info_bits``, what one stream per block comes within
0.1 % of).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import shipped_level_points, write_outputs  # noqa: E402
from mnistcodec.experiments.bdrate import PRESET_BD_METHOD, bd_text, preset_bd_rates  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- vr:start -->", "<!-- vr:end -->"
ANCHORS = ("improved", "seed")
#: The rate measures of the second table: (key in the points, label).
RATES = (
    ("string_bits", "bit strings (v3)"),
    ("byte_string_bits", "byte strings (v1, v2)"),
    ("info_bits", "information content"),
)


def summarise(points: dict[str, list[dict]], budgets: dict[str, int]) -> dict:
    """BD-rates of every variable-rate curve (``points`` keys other than the anchors)."""
    result: dict = {"points": points, "budgets": budgets, "method": PRESET_BD_METHOD, "bd": {}}
    curves = [name for name in points if name not in ANCHORS]
    result["bd_by_rate"] = {
        f"{name} vs {anchor}": {
            rate: preset_bd_rates((anchor, points[anchor]), (name, points[name]), rate=rate)[
                "psnr"
            ]["bd_rate_percent"]
            for rate, _ in RATES
            if all(rate in p for p in points[anchor] + points[name])
        }
        for name in curves
        for anchor in ANCHORS
    }
    for name in curves:
        # Against the anchors, and against each variable-rate curve of a smaller budget.
        smaller = [other for other in curves if budgets[other] < budgets[name]]
        for anchor in [*ANCHORS, *smaller]:
            bd = preset_bd_rates((anchor, points[anchor]), (name, points[name]))
            result["bd"][f"{name} vs {anchor}"] = {
                label: {
                    k: entry[k]
                    for k in (
                        "bd_rate_percent",
                        "note",
                        "anchor_quality_range",
                        "test_quality_range",
                    )
                }
                for label, entry in bd.items()
            }
    return result


def markdown(result: dict) -> str:
    budgets = result["budgets"]
    lines = [
        START,
        "## One model for every rate: the variable-rate model",
        "",
        "Written by `python bench/vr_bdrate.py` (`bench/results/vr_bdrate.json`). Variable-rate",
        "curves: `mnistcodec evaluate MODEL --all-levels --json`, one point per level, real per-digit",
        "bit strings (`.mnc` version 3) on all 10,000 test digits, every curve measured the same way.",
        "Anchors: separately trained `improved` models at lambda",
        "300, 500, 1000, 2000 and 4000 and the seed's at 300-2000, each 5 epochs on all 60,000",
        "training digits (batch 128) for its one lambda. Training budgets of the variable-rate models: "
        + ", ".join(f"`{name}` {epochs} epochs" for name, epochs in budgets.items())
        + " of 60,000 digits (batch 128, the prior and gains at learning rate 1e-2, one run for all 16"
        + " levels; `vr-mixture-long` is `vr-mixture`'s run resumed from 30 epochs for 4 more at a tenth"
        + " of the learning rates).",
        "",
        "| curve | BD-rate at equal PSNR | at equal MAD |",
        "| --- | --- | --- |",
    ]
    for key, bd in result["bd"].items():
        psnr, mad = bd["psnr"], bd["mad"]
        lines.append(
            f"| {key} | {bd_text(psnr['bd_rate_percent'], psnr['note'])} | {bd_text(mad['bd_rate_percent'], mad['note'])} |"
        )
    lines += [
        "",
        "The same evaluations under each rate measure, BD-rate at equal PSNR against the",
        "anchors (the string lengths exclude the lengths that the container stores beside",
        "the strings, for bit and byte strings alike):",
        "",
        "| curve | " + " | ".join(label for _, label in RATES) + " |",
        "| --- |" + " --- |" * len(RATES),
    ]
    for key, by_rate in result.get("bd_by_rate", {}).items():
        cells = [f"{by_rate[rate]:+.1f} %" if rate in by_rate else "-" for rate, _ in RATES]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| curve | level | lambda | string bits | byte string bits | info bits | PSNR dB | MAD |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, points in result["points"].items():
        for p in points:
            byte_bits = f"{p['byte_string_bits']:.2f}" if "byte_string_bits" in p else "-"
            lines.append(
                f"| {name} | {p.get('level', '-')} | {p['lmbda']:g} | {p['string_bits']:.2f} | {byte_bits} "
                f"| {p['info_bits']:.2f} | {p['psnr_db']:.2f} | {p['mad']:.4f} |"
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


KEEP = ("n", "lmbda", "string_bits", "byte_string_bits", "info_bits", "psnr_db", "mad")
KEEP += ("mad_decoded", "level")


def shipped_points(specs: list[str]) -> tuple[dict, dict]:
    """``NAME:EPOCHS`` of shipped models: the level evaluations their files record
    (``evaluation_levels`` in ``pretrained/MANIFEST.json``, ``mnistcodec models --check``)."""
    points, budgets = {}, {}
    for spec in specs:
        name, epochs = spec.split(":", 1)
        points[name], budgets[name] = shipped_level_points(name, KEEP), int(epochs)
    return points, budgets


def load_points(args: argparse.Namespace) -> tuple[dict, dict]:
    stored = json.loads((REPO / "bench" / "results" / "improved_bdrate.json").read_text())["points"]
    extra = json.loads(Path(args.improved_4000).read_text())
    keep = KEEP
    points = {
        "improved": [{k: p[k] for k in keep if k in p} for p in stored["improved"]]
        + [{**extra, "lmbda": 4000.0}],
        "seed": [{k: p[k] for k in keep if k in p} for p in stored["seed"]],
    }
    budgets = {}
    for item in args.vr:
        name, epochs, path = item.split(":", 2)
        points[name] = [
            {k: p[k] for k in keep if k in p} for p in json.loads(Path(path).read_text())
        ]
        budgets[name] = int(epochs)
    points["improved"] = [{k: p[k] for k in keep if k in p} for p in points["improved"]]
    return points, budgets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--improved-4000", default=str(REPO / "runs" / "v3" / "improved-4000.json"))
    parser.add_argument("--vr", action="append", default=[], metavar="NAME:EPOCHS:JSON")
    parser.add_argument("--from-json", help="recompute from a stored results file")
    parser.add_argument(
        "--shipped", action="append", default=[], metavar="NAME:EPOCHS", help="add a shipped model"
    )
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "vr_bdrate.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    if args.from_json:
        stored = json.loads(Path(args.from_json).read_text())
        points, budgets = stored["points"], stored["budgets"]
    else:
        points, budgets = load_points(args)
    more_points, more_budgets = shipped_points(args.shipped)
    points, budgets = {**points, **more_points}, {**budgets, **more_budgets}
    if len(points) <= len(ANCHORS):
        print(
            "error: give at least one variable-rate curve (--vr NAME:EPOCHS:JSON)", file=sys.stderr
        )
        return 2
    result = summarise(points, budgets)
    for key, bd in result["bd"].items():
        print(
            f"{key}: {bd_text(bd['psnr']['bd_rate_percent'], bd['psnr']['note'])} at equal PSNR, "
            f"{bd_text(bd['mad']['bd_rate_percent'], bd['mad']['note'])} at equal MAD"
        )
    write_outputs(result, args.json, args.markdown, START, END, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
