"""Facts the docs repeat from the code stay true: the default model, the report's duration.

The default model lives in one place, :data:`mnistcodec.coding.zoo.DEFAULT_MODEL`;
every page that calls a shipped model "the default" must name that one, so
changing the default fails here until the docs follow. The README's duration of
the report is the one ``mnistcodec report --help`` states.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mnistcodec.cli import main
from mnistcodec.coding.zoo import DEFAULT_MODEL, shipped_models

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def default_claims(text: str, names: list[str]) -> list[str]:
    """The shipped model names that ``text`` calls the default model, one per claim."""
    name = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    model = rf"`({name})`"
    patterns = [
        rf"the default model,? {model}",  # "The default model, `X`"
        rf"the default {model}",  # "the default `X` model"
        rf"{model}, the default\b",  # "(`X`, the default)"
        rf"^\|[^|\n]*{model}[^|\n]*\(shipped, default\)",  # a table row "(shipped, default)"
        rf"^({name}) .*\(default\)$",  # the listing of `mnistcodec models`
        rf"{model} is the default",
    ]
    found = []
    for pattern in patterns:
        found += [m.group(1) for m in re.finditer(pattern, text, re.I | re.M)]
    return found


def test_the_claim_finder_sees_every_form():
    names = ["vr", "vr-mixture", "vr-mixture-long"]
    text = (
        "The default model, `vr-mixture` (trained...).\n"
        "beside the default `vr` model\n"
        "### A decay (`vr-mixture-long`, the default)\n"
        "| `vr-mixture`, 20 epochs (shipped, default) | 1 |\n"
        "vr-mixture-long          vr/logistic  (default)\n"
        "`vr` is the default.\n"
        "Shipped (the default model until `vr-mixture`): history, not a claim.\n"
    )
    assert default_claims(text, names) == [
        "vr-mixture",
        "vr",
        "vr-mixture-long",
        "vr-mixture",
        "vr-mixture-long",
        "vr",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_that_names_the_default_model_names_the_codes(page):
    claims = default_claims(page.read_text(), list(shipped_models()))
    wrong = sorted({name for name in claims if name != DEFAULT_MODEL})
    assert not wrong, (
        f"{page.name} calls {', '.join(wrong)} the default model; the default is "
        f"{DEFAULT_MODEL} (mnistcodec.coding.zoo.DEFAULT_MODEL)"
    )


def test_the_readme_gives_the_reports_duration_as_report_help_does(capsys):
    assert main(["report", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    (duration,) = re.findall(r"about \d+ minutes on \d+ CPU cores", help_text)
    readme = " ".join((ROOT / "README.md").read_text().split())
    sentence = readme[readme.index("writes `report/index.html`") :][:200]
    assert duration in sentence, f"README: {sentence!r}; report --help: {duration!r}"
