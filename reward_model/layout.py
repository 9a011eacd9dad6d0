"""The reward model's fixed prompt layout: the user prompt, response A, response B, a question.

The answer is one token, ``A`` or ``B``; P(A ≻ B) is the softmax over those two logits at
the position after the assistant turn opens. Pure functions on text and chat messages only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

CHOICES = ("A", "B")
QUESTION = "Which response is better, A or B?"
# The auxiliary question of RM training (`data.quote_share`): its answer is the better
# response's words where the two differ.
QUOTE_QUESTION = "Quote the better response where the two differ."
# A response's own placeholders must not become image slots of the RM prompt.
_PLACEHOLDER = re.compile(r"<(image|video)>")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def collapse_think(response: str) -> str:
    """Empty every closed ``<think>…</think>`` block, keeping the tags.

    The RM judges the solution (as DeepSeek-R1's helpfulness RM does); the tags stay so that
    format-following remains visible, and the sequence stays short for a character tokenizer.
    """
    return _THINK.sub("<think></think>", response)


def clean_response(response: str, *, strip_think: bool) -> str:
    """A response as shown to the RM: think collapsed (optional), placeholders defused."""
    text = collapse_think(response) if strip_think else response
    return _PLACEHOLDER.sub(r"[\1]", text).strip()


def _content(message: Any) -> tuple[str, str]:
    if isinstance(message, dict):
        role, content = message.get("role"), message.get("content")
    else:  # a pydantic Message
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise ValueError(f"a prompt message needs a role and string content, got {message!r:.80}")
    return role, content


def normalise_prompt(prompt: str | Sequence[Any], n_images: int = 0) -> list[dict[str, str]]:
    """Chat messages from a user text or a message list; with images but no ``<image>``
    placeholder anywhere, the placeholders go in front of the last user message."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(zip(("role", "content"), _content(m), strict=True)) for m in prompt]
    if not messages or not any(m["role"] == "user" for m in messages):
        raise ValueError("the prompt needs a user message")
    if not any(m["content"].strip() for m in messages) and n_images == 0:
        raise ValueError("the prompt is empty")
    text = "".join(m["content"] for m in messages)
    if n_images and "<image>" not in text:
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last] = {
            **messages[last],
            "content": "<image>" * n_images + messages[last]["content"],
        }
    return messages


def comparison_messages(
    prompt: str | Sequence[Any],
    first: str,
    second: str,
    *,
    n_images: int = 0,
    strip_think: bool = True,
    question: str = QUESTION,
) -> list[dict[str, str]]:
    """The RM conversation asking whether ``first`` (shown as A) beats ``second`` (shown as B).

    ``question`` replaces the verdict question only for auxiliary training examples."""
    messages = normalise_prompt(prompt, n_images)
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    body = (
        f"{messages[last]['content']}\n"
        f"[A] {clean_response(first, strip_think=strip_think)}\n"
        f"[B] {clean_response(second, strip_think=strip_think)}\n"
        f"{question}"
    )
    # Earlier turns stay as they were; the responses join the last user turn.
    return [*messages[:last], {"role": "user", "content": body}, *messages[last + 1 :]]


def target_token(first_is_better: bool) -> str:
    """The answer token the RM is trained to give: ``A`` when the first-shown response wins."""
    return CHOICES[0] if first_is_better else CHOICES[1]


def differing_span(better: str, worse: str) -> str:
    """The words of ``better`` from its first to its last difference with ``worse``.

    Words are whitespace-separated; where ``worse`` only inserts words, the better response's
    words on either side of the insertion are quoted. Identical responses give ``""``.
    """
    a, b = better.split(), worse.split()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    changed = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not changed:
        return ""
    lo, hi = min(op[1] for op in changed), max(op[2] for op in changed)
    if lo == hi:
        lo, hi = max(lo - 1, 0), min(hi + 1, len(a))
    return " ".join(a[lo:hi])
