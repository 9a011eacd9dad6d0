"""The tiny default policy: a Qwen2-VL-family model, its tokenizer and image/video processor.

``vlm.load(path) -> (model, processor)`` is the loader every component uses. Names are
imported on first use, so ``import vlm`` (and the CLI) stays free of torch until needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load": "vlm.model",
    "create": "vlm.model",
    "save": "vlm.model",
    "generate": "vlm.model",
    "Generation": "vlm.model",
    "count_parameters": "vlm.model",
    "VLProcessor": "vlm.processor",
    "Video": "vlm.processor",
    "to_pil": "vlm.processor",
    "plan_video": "vlm.video",
    "VideoPlan": "vlm.video",
    "PRESETS": "vlm.config",
    "VisionSettings": "vlm.config",
    "build_tokenizer": "vlm.tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
