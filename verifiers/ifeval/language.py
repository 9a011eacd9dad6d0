"""Language identification for IFEval's language and case checks, made deterministic.

langdetect samples n-grams at random; IFEval calls it unseeded. A private, seeded detector
factory gives the same answer for the same text on every run and in every worker, without
touching langdetect's module-level factory that other code may use.
"""

from __future__ import annotations

import functools

from langdetect import DetectorFactory, LangDetectException
from langdetect.detector_factory import PROFILES_DIRECTORY

SEED = 0


@functools.cache
def _factory() -> DetectorFactory:
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = SEED
    return factory


def supported_languages() -> frozenset[str]:
    """Language codes the detector can return (ISO 639-1, plus zh-cn / zh-tw)."""
    return frozenset(_factory().get_lang_list())


def detect_language(text: str) -> str | None:
    """The most likely language code of ``text``, or None when it has no detectable features."""
    detector = _factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None
