"""Translations of the report's fixed texts.

A catalogue per language, ``audit/locales/<lang>.yaml``, maps each English text to its translation. The
templates and the report's view model call ``_("English text")``; texts written by checks (titles, findings,
method notes) are data and stay as the checks wrote them. A text missing from a catalogue falls back to English
(a test keeps the Japanese catalogue complete).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("en", "ja")
_LOCALES = Path(__file__).resolve().parent / "locales"


@functools.lru_cache(maxsize=4)
def catalog(language: str) -> dict[str, str]:
    """English text -> translation for ``language`` (empty for English).

    Raises
    ------
    ValueError
        If ``language`` is not one of :data:`LANGUAGES`.
    """
    if language not in LANGUAGES:
        raise ValueError(f"report language must be one of {', '.join(LANGUAGES)}; got {language!r}")
    if language == "en":
        return {}
    data = yaml.safe_load((_LOCALES / f"{language}.yaml").read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in data.items()}


def translator(language: str) -> Callable[..., str]:
    """A function ``t(text, **fields)``: the translation of ``text``, with ``{field}`` placeholders filled."""
    table = catalog(language)

    def t(text: str, **fields: Any) -> str:
        out = table.get(text, text)
        return out.format(**fields) if fields else out

    return t
