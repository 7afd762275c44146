"""The report's words outside the page: the figures' text and the progress lines, by language.

The page's templates and this catalogue share one Jinja2 environment per
language (:func:`environment`), so numbers are written the same way
everywhere: the ``num`` filter gives ``1,234.5`` in English and ``1 234,5``
in French. The catalogue is ``templates/<lang>/words.txt``: a dict ``t`` of
fixed texts and one macro per text that holds numbers::

    words = Words("fr")
    words("epoch")                                   # "époque"
    words("untrained_title", distortion=0.0946, rate=55.2)
    words.num(0.5, "{:.2f}")                         # "0,50"
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache, partial
from numbers import Real
from typing import Any

import jinja2

from mnistcodec.errors import InputError

LANGUAGES = ("en", "fr")
"""Languages the report can be written in (one template folder each)."""

_SEPARATORS = {"en": {}, "fr": {ord(","): "\u00a0", ord("."): ","}}
"""How each language writes the thousands and decimal separators of a formatted number."""


def check_language(lang: str) -> str:
    """``lang`` if the page can be written in it, else an :class:`InputError` naming the languages."""
    if lang not in LANGUAGES:
        raise InputError(f"unknown report language {lang!r}; choose one of {', '.join(LANGUAGES)}")
    return lang


def format_number(lang: str, value: Any, fmt: str = "{:.2f}") -> str:
    """``value`` formatted with ``fmt`` in ``lang``'s separators; ``-`` for a missing number.

    A value that rounds to zero is written without its sign (never ``-0``).
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, Real) and fmt.format(abs(value)) == fmt.format(0.0):
        value = 0.0  # a value that rounds to zero is written without a sign: never "-0"
    text = fmt.format(value)
    return text.translate(_SEPARATORS[lang])


def _numbers(lang: str, values: Sequence[Any], fmt: str = "{:g}") -> str:
    return ", ".join(format_number(lang, v, fmt) for v in values)


@cache
def environment(lang: str) -> jinja2.Environment:
    """The template environment of one language: HTML autoescaped, text templates not."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mnistcodec.lab", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    check_language(lang)
    env.filters["num"] = partial(format_number, lang)
    env.filters["nums"] = partial(_numbers, lang)
    env.globals["lang"] = lang
    return env


class Words:
    """The catalogue ``templates/<lang>/words.txt`` of one language: see the module docstring."""

    def __init__(self, lang: str = "en") -> None:
        self.lang = check_language(lang)
        self._module = environment(lang).get_template(f"{lang}/words.txt").module
        self._texts: Mapping[str, str] = self._module.t

    def __call__(self, key: str, **values: Any) -> str:
        """The text called ``key``: a fixed text, or a macro given ``values``."""
        if key in self._texts:
            return self._texts[key]
        macro = getattr(self._module, key, None)
        if not callable(macro):
            raise KeyError(f"no text {key!r} in {self.lang}/words.txt")
        return str(macro(**values)).strip()

    def num(self, value: Any, fmt: str = "{:.2f}") -> str:
        """A number in this language's separators."""
        return format_number(self.lang, value, fmt)

    @property
    def decimal_comma(self) -> bool:
        """Whether this language writes decimals with a comma."""
        return format_number(self.lang, 0.5, "{:.1f}") == "0,5"

    def keys(self) -> set[str]:
        """Every text of the catalogue: the fixed texts and the macros' names."""
        macros = {
            name
            for name in dir(self._module)
            if not name.startswith("_") and callable(getattr(self._module, name))
        }
        return set(self._texts) | macros
