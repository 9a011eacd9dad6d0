"""Canonical spelling of a math answer before parsing: delimiters, spacing, units, degrees, %.

Pure string functions; callers cap the text at 1,000 characters before it gets here.
"""

from __future__ import annotations

import re

_UNICODE = str.maketrans(
    {
        "−": "-",
        "–": "-",
        "×": r"\times ",
        "·": r"\cdot ",
        "÷": r"\div ",
        "≤": r"\le ",
        "≥": r"\ge ",
        "≠": r"\ne ",
        "∞": r"\infty ",
        "π": r"\pi ",
        "√": r"\sqrt ",
        "°": r"^\circ ",
        "∪": r"\cup ",
        "∩": r"\cap ",
        "∈": r"\in ",
        "：": ":",
        "，": ",",
        "＝": "=",
        "\u00a0": " ",
    }
)

_UNIT_WORDS = (
    "square units|sq units|cubic units|units|unit|square feet|square meters|square inches|"
    "cm|mm|km|m|kg|mg|g|lb|lbs|pounds|ounces|oz|inches|inch|in|feet|foot|ft|yards|yd|miles|mi|"
    "meters|meter|metres|centimeters|kilometers|seconds|second|sec|s|minutes|minute|min|hours|"
    "hour|hrs|hr|h|days|day|weeks|years|year|degrees|degree|deg|radians|rad|dollars|dollar|"
    "cents|cent|mph|km/h|m/s|liters|liter|l|ml|people|students|ways|cups|apples|points"
)
_TEXT_UNIT = re.compile(
    r"(?<=[\d}\)\]])\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*(?:" + _UNIT_WORDS + r")\s*\}"
    r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?",
    re.IGNORECASE,
)
_PLAIN_UNIT = re.compile(
    r"(?<=[\d}\)\]])\s+(?:" + _UNIT_WORDS + r")(?:\s*\^?\s*[23])?\s*$", re.IGNORECASE
)
_TEXT_CONNECTIVE = re.compile(r"\\(?:text|mbox|textrm)\s*\{\s*(?:or|and)\s*\}", re.IGNORECASE)
_THOUSANDS_COMMA = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_SPACE = re.compile(r"^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")


def normalize(text: str) -> str:
    """Canonical spelling of a LaTeX/plain answer: delimiters, spacing, units, degrees, %."""
    s = text.translate(_UNICODE).strip()
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*\.?", "", s)
    s = re.sub(r"\\[Bb]igg?[lrm]?(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3})", "", s)
    s = re.sub(r"(?<=\d)\\[,!;: ](?=\d{3}(?!\d))", "", s)
    s = re.sub(r"\\(?:displaystyle|textstyle|scriptstyle|limits)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:d|t|c)frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(?:d|t)binom(?![a-zA-Z])", r"\\binom", s)
    # one spelling for degrees; the parser drops it, except inside sin/cos/tan (x pi/180)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])", r"\\degree ", s)
    s = re.sub(r"\\hspace\*?\s*\{[^{}]*\}", " ", s)
    s = re.sub(r"\\(?:quad|qquad|thinspace|medspace|thickspace|enspace|space)(?![a-zA-Z])", " ", s)
    s = re.sub(r"(?<!\\)\\[,!;: ]", " ", s).replace("~", " ")  # not the "\\" row break
    s = s.replace("\\%", "%").replace("\\$", "").replace("$", "")
    s = s.replace("**", "^")
    s = _TEXT_CONNECTIVE.sub(",", s)
    s = _TEXT_UNIT.sub("", s)
    s = _PLAIN_UNIT.sub("", s)
    s = re.sub(r"[\s.,;]+$", "", s).strip()
    if _THOUSANDS_COMMA.match(s):
        s = s.replace(",", "")
    elif _THOUSANDS_SPACE.match(s):
        s = s.replace(" ", "")
    return s


def text_key(text: str) -> str:
    """A loose key for comparing non-mathematical answers: case, spaces and wrappers ignored."""
    s = re.sub(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*", "", text)
    s = s.replace("{", "").replace("}", "").replace("\\", "")
    s = re.sub(r"\s+", "", s).lower()
    m = re.fullmatch(r"\(([a-z])\)", s)
    return m.group(1) if m else s.rstrip(".")
