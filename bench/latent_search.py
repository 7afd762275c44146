"""What the encoder-side search among training latents buys: every level with and without ``--search``.

    python bench/latent_search.py [MODEL] [--candidates 4096] [--digits 10000]

Codes the first ``--digits`` MNIST test digits at every level of a model
twice: with the analysis transform's latents, and with the search of
:mod:`mnistcodec.coding.latent_search` among the ``--candidates`` most
frequent integer latents of the 60,000 training digits at each level
(``mnistcodec compress --search N``). Both encoders run in float32. It
measures real per-digit bit strings, the information content and the PSNR
and MAD of the decoded digits, prints the BD-rate of the searched curve
against the plain one and the bits each needs at 13.9 and 16.3 dB, and writes
``bench/results/latent_search.json`` (which ``bench/rd_limit.py`` reads as
the curve of ``MODEL --search``) and the section of BENCHMARKS.md between
``<!-- search:start -->`` and ``<!-- search:end -->``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmd import cpu_name, write_outputs  # noqa: E402
from mnistcodec.coding.api import Codec  # noqa: E402
from mnistcodec.coding.names import DEFAULT_CANDIDATES  # noqa: E402
from mnistcodec.coding.zoo import resolve_model  # noqa: E402
from mnistcodec.data import load_split  # noqa: E402
from mnistcodec.experiments.bdrate import bd_text  # noqa: E402
from rd_limit import bits_at  # noqa: E402
from refinement import bd_by_rate, curve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- search:start -->", "<!-- search:end -->"


def markdown(result: dict) -> str:
    plain, searched = result["plain"], result["searched"]
    at = result["at_psnr"]
    lines = [
        START,
        "## Encoder-side search among training latents",
        "",
        f"Written by `python bench/latent_search.py {result['model']} --candidates "
        f"{result['candidates']}` (`bench/results/latent_search.json`): every level of",
        f"`{result['model']}` on the first {result['digits']:,} test digits, coded with the analysis "
        "transform's latents and with `compress --search",
        f"{result['candidates']}` (the {result['candidates']:,} most frequent integer latents of "
        "the training digits at each level,",
        "kept where their Lagrangian is lower; the decoder is unchanged); real per-digit bit "
        f"strings, decoded digits, float32 encoders. {result['cpu']}.",
        "",
        "BD-rate of the searched curve against the plain one: "
        f"**{bd_text(result['bd']['string_bits']['psnr'])}** at equal PSNR, "
        f"{bd_text(result['bd']['string_bits']['mad'])} at equal MAD (bit strings); "
        f"{bd_text(result['bd']['info_bits']['psnr'])} at equal PSNR on the information content.",
        "",
        "| information bits | at 13.9 dB | at 16.3 dB |",
        "| --- | --- | --- |",
        f"| `{result['model']}` | {at['plain']['13.9']:.2f} | {at['plain']['16.3']:.2f} |",
        f"| `{result['model']}`, searched | {at['searched']['13.9']:.2f} | "
        f"{at['searched']['16.3']:.2f} |",
        "",
        f"Time: {result['seconds_per_digit_searched'] * 1e3:.3f} ms per digit and level searched, "
        f"against {result['seconds_per_digit_plain'] * 1e3:.3f} ms plain; building the candidates "
        f"of all {len(searched)} levels took {result['build_seconds']:.1f} s.",
        "",
        "| level | plain bits | plain PSNR | searched bits | searched PSNR |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p, s in zip(plain, searched, strict=True):
        lines.append(
            f"| {p['level']} | {p['info_bits']:.2f} | {p['psnr_db']:.2f} | "
            f"{s['info_bits']:.2f} | {s['psnr_db']:.2f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="vr-mse")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES)
    parser.add_argument("--digits", type=int, default=10000)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "latent_search.json"))
    parser.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    images = load_split("test").images[: args.digits]
    train = load_split("train").images
    loaded = resolve_model(args.model)
    result: dict = {
        "model": args.model,
        "candidates": args.candidates,
        "digits": int(images.shape[0]),
        "cpu": cpu_name(),
    }
    print("plain:", flush=True)
    result["plain"] = curve(Codec(loaded, precision="fp32"), images)
    codec = Codec(loaded, precision="fp32")
    search = codec.enable_search(train, args.candidates)
    t0 = time.perf_counter()
    for level in range(codec.levels):
        search.level(level)
    result["build_seconds"] = time.perf_counter() - t0
    print("searched:", flush=True)
    result["searched"] = curve(codec, images)
    for name in ("plain", "searched"):
        seconds = sum(p["seconds"] for p in result[name]) / (len(result[name]) * images.shape[0])
        result[f"seconds_per_digit_{name}"] = seconds
    result["bd"] = bd_by_rate(("plain", result["plain"]), ("searched", result["searched"]))
    result["at_psnr"] = {
        name: {str(q): bits_at(result[name], q) for q in (13.9, 16.3)}
        for name in ("plain", "searched")
    }
    print(
        f"searched vs plain: {bd_text(result['bd']['string_bits']['psnr'])} at equal PSNR, "
        f"{bd_text(result['bd']['string_bits']['mad'])} at equal MAD (bit strings); "
        f"{result['at_psnr']['searched']['13.9']:.2f} bits at 13.9 dB, "
        f"{result['at_psnr']['searched']['16.3']:.2f} at 16.3 dB"
    )
    write_outputs(result, args.json, args.markdown, START, END, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
