"""How far each shipped curve is from the rate-distortion limit of MNIST, and from sending nothing.

    python bench/rd_limit.py --shipped "vr-mse:NOTE" --shipped "vr-codebook:NOTE" \\
        [--curve vr-mse-refined:NOTE:runs/vr-mse-refined-levels.json ...]
    python bench/rd_limit.py --from-json bench/results/rd_limit.json   # recompute from stored points

A curve is ``mnistcodec evaluate MODEL --all-levels --json`` (one point per
level: real per-digit bit strings, information content, PSNR and MAD on the
10,000 test digits), or for ``--shipped`` the same evaluation that the shipped
model's file records (``evaluation_levels`` in ``pretrained/MANIFEST.json``,
re-derived by ``mnistcodec models --check``); NOTE is its training budget in words. The reference
curve, ``vr-mixture-long``, comes from ``bench/results/vr_bdrate.json`` (the
same evaluation). The curve of ``MODEL --search`` (the encoder-side search among
training latents) comes from ``bench/results/latent_search.json``
(``bench/latent_search.py``), the codebooks' from ``bench/results/rd_floor.json``.
The floor is ``bench/results/rd_floor.json`` (the codecs
without a network, measured by ``bench/rd_floor.py``); the limit is the quoted
NERD estimate of R(D) (:data:`mnistcodec.experiments.rd_limit.NERD_MNIST`).

For each curve it reports:

* the bits needed at 13.9 and 16.3 dB, the two PSNRs the estimate gives
  (information content and bit strings), interpolated between the two levels
  around each PSNR, linearly in (PSNR, log bits), and their distance to the
  estimate and to the targets (6 and 12 bits);
* the levels under the floor (:func:`~mnistcodec.experiments.trivial_codecs.below_floor`);
* the BD-rate against ``vr-mixture-long`` at equal PSNR and at equal MAD, on
  bit strings and on information content
  (:func:`~mnistcodec.experiments.bdrate.preset_bd_rates`, pchip, over the
  quality range both curves cover).

Writes ``bench/results/rd_limit.json``, the section of BENCHMARKS.md between
``<!-- rd-limit:start -->`` and ``<!-- rd-limit:end -->``, and the README's
headline table between the same markers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import replace_section, shipped_level_points  # noqa: E402
from mnistcodec.experiments.bdrate import bd_text, preset_bd_rates  # noqa: E402
from mnistcodec.experiments.rd_limit import NERD_MNIST  # noqa: E402
from mnistcodec.experiments.trivial_codecs import Floor, below_floor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- rd-limit:start -->", "<!-- rd-limit:end -->"
REFERENCE = "vr-mixture-long"
#: The targets at the estimate's two PSNRs: (PSNR dB, most bits per digit).
TARGETS = ((13.9, 6.0), (16.3, 12.0))
RATES = (("info_bits", "information"), ("string_bits", "bit strings"))
#: The K-means pixel codebooks of bench/rd_floor.py, shown as one curve (one point per size).
CODEBOOKS = "k-means codebooks"
KEEP = (
    "level",
    "lmbda",
    "codewords",
    "quality",
    "string_bits",
    "byte_string_bits",
    "info_bits",
    "psnr_db",
    "mad",
    "n",
)


def bits_at(points: list[dict], psnr_db: float, rate: str = "info_bits") -> float | None:
    """Bits at ``psnr_db``: linear in (PSNR, log bits) between the levels around it; None outside."""
    pts = sorted((p["psnr_db"], p[rate]) for p in points)
    for (q0, r0), (q1, r1) in zip(pts, pts[1:], strict=False):
        if q0 <= psnr_db <= q1 and q1 > q0 and r0 > 0 and r1 > 0:
            t = (psnr_db - q0) / (q1 - q0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


def summarise(
    curves: dict[str, list[dict]],
    notes: dict[str, str],
    floor_rows: list,
    refinement: dict | None = None,
) -> dict:
    """Every figure of the tables from the stored points (``refinement``: bench/refinement.py's)."""
    floor = Floor.from_points(floor_rows)
    result: dict = {
        "refinement": refinement,
        "curves": curves,
        "notes": notes,
        "trivial_codecs": floor_rows,
        "rd_estimate": NERD_MNIST.as_dict(),
        "at_psnr": {},
        "below_floor": {},
        "bd_vs_reference": {},
    }
    estimate = dict((q, b) for b, q in NERD_MNIST.points)
    for name, points in curves.items():
        result["at_psnr"][name] = [
            {
                "psnr_db": psnr,
                "target_bits": target,
                "estimate_bits": estimate.get(psnr),
                **{rate: bits_at(points, psnr, rate) for rate, _ in RATES},
            }
            for psnr, target in TARGETS
        ]
        result["below_floor"][name] = [
            {
                "level": row.get("level"),
                "reason": row["floor_reason"],
                "gap_db": row["floor_gap_db"],
            }
            for row in below_floor(floor, points, rate_key="info_bits")
        ]
        if name != REFERENCE:
            result["bd_vs_reference"][name] = {
                rate: {
                    quality: entry["bd_rate_percent"]
                    for quality, entry in preset_bd_rates(
                        (REFERENCE, curves[REFERENCE]), (name, points), rate=rate
                    ).items()
                }
                for rate, _ in RATES
            }
    return result


def _bits(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def headline(result: dict) -> str:
    """The README's table: bits at the estimate's two PSNRs, and the BD-rates."""
    lines = [
        START,
        "| codec | bits at 13.9 dB | bits at 16.3 dB | BD-rate vs `vr-mixture-long` (PSNR) |",
        "| --- | --- | --- | --- |",
    ]
    estimate = result["rd_estimate"]
    est = {p["psnr_db"]: p["bits_per_digit"] for p in estimate["points"]}
    lines.append(
        f"| R(D) estimate (NERD; training set, 32x32, unbounded blocks) | {est[13.9]:.1f} | "
        f"{est[16.3]:.1f} | |"
    )
    for name, rows in result["at_psnr"].items():
        bd = result["bd_vs_reference"].get(name)
        bd_cell = "reference" if bd is None else bd_text(bd["string_bits"]["psnr"])
        lines.append(
            f"| `{name}` | {_bits(rows[0]['info_bits'])} | {_bits(rows[1]['info_bits'])} | {bd_cell} |"
        )
    refined = result.get("refinement")
    if refined:
        at, plain = refined["at_psnr"]["refined"], refined["at_psnr"]["plain"]
        lines.append(
            f"| `{refined['model']}` with `--refine {refined['steps']}` (first "
            f"{refined['digits']:,} test digits; without: {_bits(plain['13.9'])} and "
            f"{_bits(plain['16.3'])}) | {_bits(at['13.9'])} | {_bits(at['16.3'])} "
            f"| {bd_text(refined['bd_against']['string_bits']['psnr'])} |"
        )
    lines += [
        "",
        "Bits are information content per digit on the 10,000 test digits (the refined row: on",
        "its digits, `bench/refinement.py`), interpolated between levels; BD-rates on real",
        "per-digit bit strings. Written by `python bench/rd_limit.py`.",
    ]
    codebooks = result["curves"].get(CODEBOOKS)
    if codebooks:
        low, high = codebooks[0], codebooks[-1]
        lines += [
            f"The codebooks (`bench/rd_floor.py`): whole-digit K-means codebooks of {low['codewords']:,}",
            f"to {high['codewords']:,} codewords, no network. They reach {low['psnr_db']:.2f} to "
            f"{high['psnr_db']:.2f} dB only;",
            "their BD-rate is over that range.",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    lines = [
        START,
        "## Toward the rate-distortion limit",
        "",
        "Written by `python bench/rd_limit.py` (`bench/results/rd_limit.json`). Curves:",
        "`mnistcodec evaluate MODEL --all-levels --json` on all 10,000 test digits, one point per",
        "level. The limit: the " + result["rd_estimate"]["citation"] + " estimate of R(D) under",
        "squared error, on the training set resized to 32x32 with unbounded block length, converted",
        "to 28x28 digits; one digit at a time costs more (their one-shot coder added "
        + "{:g} to {:g} bits on SVHN).".format(*result["rd_estimate"]["one_shot_extra_bits"]),
        "The floor: `bench/rd_floor.py` (the mean training digit at 0 bits, the class means at",
        "the label's entropy).",
        "",
        "| curve | training | PSNR | target bits | estimate | information bits | bit-string bits |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rows in result["at_psnr"].items():
        for row in rows:
            lines.append(
                f"| `{name}` | {result['notes'].get(name, '')} | {row['psnr_db']} dB "
                f"| {row['target_bits']:g} | {_bits(row['estimate_bits'])} "
                f"| {_bits(row['info_bits'])} | {_bits(row['string_bits'])} |"
            )
    lines += ["", "BD-rate against `vr-mixture-long` (negative: fewer bits):", ""]
    lines += [
        "| curve | bit strings, equal PSNR | bit strings, equal MAD | information, equal PSNR "
        "| information, equal MAD |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, bd in result["bd_vs_reference"].items():
        cells = [
            bd_text(bd[rate][quality]) for rate, _ in RATES[::-1] for quality in ("psnr", "mad")
        ]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "Levels under the floor (worse than a codec without a network):", ""]
    for name, rows in result["below_floor"].items():
        text = ", ".join(
            f"level {r['level']} ({r['reason']}, {r['gap_db']:.2f} dB under)" for r in rows
        )
        lines.append(f"- `{name}`: {text or 'none'}")
    lines += [
        "",
        "| curve | level | lambda (codebooks: size) | info bits | bit-string bits | PSNR dB | MAD |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, points in result["curves"].items():
        for p in points:
            setting = f"{p['lmbda']:g}" if "lmbda" in p else f"{p['codewords']:,} codewords"
            lines.append(
                f"| `{name}` | {p.get('level', '-')} | {setting} | {p['info_bits']:.2f} "
                f"| {p['string_bits']:.2f} | {p['psnr_db']:.2f} | {p['mad']:.4f} |"
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def load_points(specs: list[str], shipped: list[str] = ()) -> tuple[dict, dict]:
    stored = json.loads((REPO / "bench" / "results" / "vr_bdrate.json").read_text())["points"]
    curves = {REFERENCE: [{k: p[k] for k in KEEP if k in p} for p in stored[REFERENCE]]}
    notes = {REFERENCE: "34 epochs (MAD)"}
    for spec in shipped:
        name, note = spec.split(":", 1)
        curves[name], notes[name] = shipped_level_points(name, KEEP), note
    for spec in specs:
        name, note, path = spec.split(":", 2)
        rows = json.loads(Path(path).read_text())
        curves[name] = [{k: p[k] for k in KEEP if k in p} for p in rows]
        notes[name] = note
    return curves, notes


def codebook_points(rows: list[dict]) -> list[dict]:
    """bench/rd_floor.py's codebook rows as a curve: "level" is the size's rank, the size its setting."""
    return [
        {"level": i, "quality": row["codewords"], **{k: row[k] for k in KEEP if k in row}}
        for i, row in enumerate(sorted(rows, key=lambda row: row["codewords"]))
    ]


def _refinement(path: Path) -> dict | None:
    """What the README quotes of ``bench/refinement.py``'s results, if they exist."""
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    keys = ("model", "digits", "steps", "against", "at_psnr", "bd", "bd_against")
    return {key: stored[key] for key in keys if key in stored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curve", action="append", default=[], metavar="NAME:NOTE:JSON")
    parser.add_argument("--shipped", action="append", default=[], metavar="NAME:NOTE")
    parser.add_argument("--from-json", help="recompute from a stored results file")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "rd_limit.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    args = parser.parse_args(argv)
    if args.from_json:
        stored = json.loads(Path(args.from_json).read_text())
        curves, notes, floor_rows = stored["curves"], stored["notes"], stored["trivial_codecs"]
        refinement = stored.get("refinement")
    else:
        curves, notes = load_points(args.curve, args.shipped)
        floor_file = REPO / "bench" / "results" / "rd_floor.json"
        stored_floor = json.loads(floor_file.read_text())
        floor_rows = stored_floor["trivial_codecs"]
        if stored_floor.get("codebooks"):
            curves[CODEBOOKS] = codebook_points(stored_floor["codebooks"])
            notes[CODEBOOKS] = "K-means, no network"
        search_file = REPO / "bench" / "results" / "latent_search.json"
        if search_file.exists():
            searched = json.loads(search_file.read_text())
            name = f"{searched['model']} --search"
            curves[name] = [{k: p[k] for k in KEEP if k in p} for p in searched["searched"]]
            notes[name] = (
                f"{notes.get(searched['model'], searched['model'])}; the encoder searches "
                f"{searched['candidates']:,} training latents per level"
            )
        refinement = _refinement(REPO / "bench" / "results" / "refinement.json")
    result = summarise(curves, notes, floor_rows, refinement)
    for name, rows in result["at_psnr"].items():
        cells = ", ".join(
            f"{_bits(r['info_bits'])} bits at {r['psnr_db']} dB (target {r['target_bits']:g})"
            for r in rows
        )
        print(f"{name}: {cells}")
    for name, bd in result["bd_vs_reference"].items():
        print(
            f"{name} vs {REFERENCE}: {bd_text(bd['string_bits']['psnr'])} at equal PSNR, "
            f"{bd_text(bd['string_bits']['mad'])} at equal MAD (bit strings)"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    replace_section(Path(args.markdown), START, END, markdown(result))
    replace_section(Path(args.readme), START, END, headline(result))
    print(f"wrote {args.json}, {args.markdown} and {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
