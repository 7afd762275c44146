"""The report's page: templates rendered with the numbers of a run.

The words live in Jinja2 templates, one set per language
(``templates/<lang>/``); the structure of the page (its chapters, sections
and tables, in the lab's order) is shared (``templates/page.html`` and
``templates/macros.html``). Python computes the numbers the prose needs
(:func:`page_context`) and embeds the figures as base64 ``data:`` URIs, so
``index.html`` can be moved, mailed or opened offline on its own::

    html = render_page(results, out / "figures", lang="fr")

Numbers are formatted by the ``num`` filter in the language's convention
(``1,234.5`` in English, ``1 234,5`` in French).
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnistcodec.lab.protocol import LAB_BATCH, LAB_STEPS, REPORT_PRESETS
from mnistcodec.lab.words import LANGUAGES, check_language, environment

__all__ = [
    "LANGUAGES",
    "check_language",
    "embed_figures",
    "environment",
    "page_context",
    "protocol_lines",
    "render_page",
]


def protocol_lines(protocol: Mapping[str, Any], lang: str = "en") -> list[str]:
    """The plain-language lines stating a protocol (``asdict`` of a ReportProtocol), in ``lang``."""
    text = environment(lang).get_template(f"{lang}/protocol.txt").render(p=protocol)
    return [line.strip() for line in text.splitlines() if line.strip()]


def embed_figures(fig_dir: str | os.PathLike) -> dict[str, str]:
    """Every PNG of ``fig_dir`` as a ``data:`` URI, by file stem."""
    return {
        path.stem: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        for path in sorted(Path(fig_dir).glob("*.png"))
    }


def render_page(results: Mapping, fig_dir: str | os.PathLike, lang: str = "en") -> str:
    """The HTML page for ``results`` (as built by :func:`mnistcodec.lab.report.build_report`) in ``lang``."""
    template = environment(lang).get_template("page.html")
    return template.render(**page_context(results), images=embed_figures(fig_dir))


# ----------------------------------------------------------------------------- numbers for the prose


def _row_for(rows: Sequence[Mapping], **match: Any) -> Mapping | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _lambda_change(by_key: Mapping[str, Mapping], new: str, old: str) -> dict | None:
    """The main model's rate and quality at ``old`` and ``new`` lambda, and the rate change (%)."""
    if new not in by_key or old not in by_key:
        return None
    a, b = by_key[old], by_key[new]
    pct = (
        100.0 * (b["string_bits"] - a["string_bits"]) / a["string_bits"]
        if a["string_bits"]
        else None
    )
    return {"old": a, "new": b, "old_key": old, "new_key": new, "rate_change_percent": pct}


def _grid_comparison(
    results: Mapping, by_key: Mapping[str, Mapping], keys: Sequence[str]
) -> list[dict]:
    """Per lambda: the lab batch's mean real bits, information and PSNR, and the test set's."""
    grids = results["lab_batch"]["by_lmbda"]
    return [
        {
            "key": key,
            "batch": {
                name: float(np.mean(grids[key][name]))
                for name in ("string_bits", "info_bits", "psnr_db")
            },
            "test": by_key.get(key, {}),
        }
        for key in keys
        if key in grids
    ]


def _latent_groups(rows: Sequence[Mapping]) -> list[dict]:
    """Per lambda with several latent sizes: the smallest, the largest and the best (lowest objective)."""
    groups = []
    for lmbda in sorted({r["lmbda"] for r in rows}):
        group = sorted((r for r in rows if r["lmbda"] == lmbda), key=lambda r: r["latent_dims"])
        if len(group) >= 2:
            groups.append(
                {
                    "lmbda": lmbda,
                    "lo": group[0],
                    "hi": group[-1],
                    "best": min(group, key=lambda r: r["lagrangian"]),
                }
            )
    return groups


def _baseline_groups(rows: Sequence[Mapping]) -> list[dict]:
    """Per codec and mode: cheapest point, most expensive point, and whether it is lossless."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["mode"]), []).append(row)
    out = []
    for (label, mode), pts in groups.items():
        pts = sorted(pts, key=lambda r: r["bits_per_digit"])
        out.append(
            {
                "label": label,
                "mode": mode,
                "lo": pts[0],
                "hi": pts[-1],
                "lossless": bool(pts[0].get("lossless")),
            }
        )
    return out


def _side(entry: Mapping) -> str | None:
    """Where the anchor's PSNR range lies against the test curve's: ``above``, ``below`` or ``None``."""
    anchor, test = entry.get("anchor_quality_range"), entry.get("test_quality_range")
    if not anchor or not test:
        return None
    if anchor[0] >= test[1]:
        return "above"
    return "below" if anchor[1] <= test[0] else None


def _bd_classical(results: Mapping) -> dict[str, Any]:
    """BD-rates against classical codecs: those computed, and per learned curve those that are not.

    A missing BD-rate says why (``side``: the classical codec's PSNR range lies
    wholly ``above`` or ``below`` the learned curve's; else its ``note``); above,
    ``cheapest`` and ``dearest`` are the bits of the codec's cheapest point and of
    the learned curve's most expensive one, and ``times`` their ratio.
    """
    entries = results["bd_rates"]["learned_vs_classical"]
    classical: dict[str, float] = {}
    for row in results["baselines"]["rows"]:
        name = f"{row['label']} ({row['mode']})"
        classical[name] = min(classical.get(name, math.inf), row["bits_per_digit"])
    floor = results.get("floor") or {}
    learned = {floor.get("default_model"): floor.get("default_model_levels") or []}
    computed = [e for e in entries if e["bd_rate_percent"] is not None]
    missing: dict[str, list[dict]] = {}
    for e in entries:
        if e["bd_rate_percent"] is not None:
            continue
        rows = learned.get(e["test"]) or results["lambda_sweep"]
        dearest = max((r["string_bits"] for r in rows), default=None)
        cheapest = classical.get(e["anchor"])
        times = cheapest / dearest if dearest and cheapest and cheapest < math.inf else None
        extra = {"side": _side(e), "cheapest": cheapest, "dearest": dearest, "times": times}
        missing.setdefault(e["test"], []).append({**e, **extra})
    return {"computed": computed, "missing": missing}


def _floor_points(floor: Mapping | None) -> list[dict]:
    """Per checked curve (in order), its points under the floor (possibly none)."""
    if not floor:
        return []
    return [
        {"curve": name, "checked": count, "points": floor["below"].get(name, [])}
        for name, count in floor["checked"].items()
    ]


def page_context(results: Mapping) -> dict[str, Any]:
    """What the templates read: the results themselves and the few numbers derived from them."""
    p, tr = results["protocol"], results["training"]
    main_key = f"{p['main_lmbda']:g}"
    grids = results["lab_batch"]["by_lmbda"]
    by_key = {f"{r['lmbda']:g}": r for r in results["lambda_sweep"]}
    prior_rows = results["prior_sweep"]
    prior_main = [r for r in prior_rows if r["lmbda"] == p["main_lmbda"]]
    presets = results.get("presets")
    return {
        "r": results,
        "p": p,
        "ds": results["dataset"],
        "l21": results["lab_2_1"],
        "tr": tr,
        "steps": tr["epochs"] * tr["steps_per_epoch"],
        "lab_steps": LAB_STEPS,
        "lab_batch": LAB_BATCH,
        "main_key": main_key,
        "main_row": _row_for(results["lambda_sweep"], lmbda=p["main_lmbda"]) or {},
        "grid": grids.get(main_key),
        "batch_mean_psnr": float(np.mean(grids[main_key]["psnr_db"]))
        if main_key in grids
        else None,
        "lambda_changes": {key: _lambda_change(by_key, key, "2000") for key in grids},
        "grid_comparisons": {
            key: _grid_comparison(results, by_key, ("2000", key)) for key in grids
        },
        "latent_sizes": len({r["latent_dims"] for r in results["latent_sweep"]}),
        "latent_groups": _latent_groups(results["latent_sweep"]),
        "prior_families": len({r["prior"] for r in prior_rows}),
        "prior_ranking": sorted(prior_main, key=lambda r: r["lagrangian"]),
        "prior_families_main": len({r["prior"] for r in prior_main}),
        "baseline_groups": _baseline_groups(results["baselines"]["rows"]),
        "bd_classical": _bd_classical(results),
        "floor_points": _floor_points(results.get("floor")),
        "report_presets": REPORT_PRESETS,
        "preset_rows": {
            name: sorted(presets["rows"][name], key=lambda r: r["lmbda"]) for name in REPORT_PRESETS
        }
        if presets is not None
        else None,
        "preset_seconds": {
            name: sum(r["train_seconds"] for r in presets["rows"][name]) for name in REPORT_PRESETS
        }
        if presets is not None
        else None,
    }
