"""The tiny policy's tokenizers, built here deterministically: characters or subwords.

``char``: one token per character over printable ASCII plus newline, so any task text
tokenizes (anything else becomes ``<unk>``) and the model never has to learn subword
spellings of coordinates. ``bpe``: the same characters plus byte-pair merges learnt once from
synth/'s prompts and reference responses (`vlm/bpe_merges.json`, rebuilt by
``python -m vlm.tokenizer``): words the tasks use become one or two tokens, digits stay one
token each, and task text is 1.9-4.4x shorter. The special tokens use Qwen2-VL's names so that
the same processor and chat layout serve a real Qwen2-VL checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, get_args

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

TokenizerKind = Literal["char", "bpe"]
TOKENIZER_KINDS: tuple[str, ...] = get_args(TokenizerKind)
MERGES_FILE = Path(__file__).with_name("bpe_merges.json")
BPE_VOCAB_SIZE = 512
# Pre-tokens of the bpe kind: a word with its leading space, one digit (a coordinate's digits
# stay separate tokens, as with characters), one punctuation mark with its leading space, one
# whitespace character. Merges never cross these, so every piece of text still tokenizes.
_BPE_SPLIT = r" ?[A-Za-z]+|[0-9]| ?[^A-Za-z0-9\s]|\s"

PAD = "<|endoftext|>"
UNK = "<unk>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"

# Control tokens: dropped by decode(skip_special_tokens=True).
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD,
    UNK,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
)
# Markup the verifiers read in responses: single ids, but kept in decoded text.
MARKUP_TOKENS: tuple[str, ...] = (
    "<think>",
    "</think>",
    "<bbox>",
    "</bbox>",
    "<point>",
    "</point>",
)
CHARACTERS: tuple[str, ...] = ("\n", *(chr(c) for c in range(32, 127)))

# Qwen-style layout. String content may carry the prompt record's `<image>`/`<video>`
# placeholders; list content uses {"type": "image"|"video"|"text"} parts as Qwen2-VL does.
# No default system prompt: every prompt token costs the tiny model context.
CHAT_TEMPLATE = (
    "{%- set vis_image = '<|vision_start|><|image_pad|><|vision_end|>' -%}"
    "{%- set vis_video = '<|vision_start|><|video_pad|><|vision_end|>' -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] | replace('<image>', vis_image) | replace('<video>', vis_video) -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- vis_image -}}"
    "{%- elif part['type'] == 'video' -%}{{- vis_video -}}"
    "{%- else -%}{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _base_vocab() -> list[str]:
    return [*SPECIAL_TOKENS, *MARKUP_TOKENS, *CHARACTERS]


def _bpe_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(_BPE_SPLIT), behavior="isolated")


def train_merges(texts: Iterable[str], vocab_size: int = BPE_VOCAB_SIZE) -> list[tuple[str, str]]:
    """Byte-pair merges over `CHARACTERS` learnt from ``texts``, in merge order."""
    base = len(_base_vocab())
    if vocab_size <= base:
        raise ValueError(f"vocab_size must exceed the {base} base tokens, got {vocab_size}")
    core = Tokenizer(models.BPE(unk_token=UNK))
    core.pre_tokenizer = _bpe_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        # the markup and special tokens are ids of their own; only merges are learnt here
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(MARKUP_TOKENS),
        initial_alphabet=list(CHARACTERS),
        special_tokens=[],
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    merges = json.loads(core.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def load_merges(path: str | Path = MERGES_FILE) -> list[tuple[str, str]]:
    """The committed merge list (a JSON list of [left, right] pairs)."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, list) or not all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) and x for x in m)
        for m in raw
    ):
        raise ValueError(f"{path}: expected a JSON list of [left, right] string pairs")
    return [(a, b) for a, b in raw]


def build_tokenizer(
    kind: TokenizerKind = "char", merges: list[tuple[str, str]] | None = None
) -> PreTrainedTokenizerFast:
    """Build the character-level (``char``) or subword (``bpe``) tokenizer with the chat template.

    Both share ids 0-109 (control tokens, markup, characters); ``bpe`` appends one id per merge
    (`load_merges()` unless ``merges`` is given).
    """
    if kind == "char":
        vocab = {tok: i for i, tok in enumerate(_base_vocab())}
        core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        # Every character is its own pre-token; [\s\S] also matches the newline.
        core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    elif kind == "bpe":
        merges = load_merges() if merges is None else merges
        vocab = {tok: i for i, tok in enumerate(_base_vocab())}
        for a, b in merges:
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge ({a!r}, {b!r}) uses a token no earlier merge made")
            vocab.setdefault(a + b, len(vocab))
        core = Tokenizer(models.BPE(vocab, list(merges), unk_token=UNK, ignore_merges=False))
        core.pre_tokenizer = _bpe_pre_tokenizer()
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {TOKENIZER_KINDS}")
    core.decoder = decoders.Fuse()  # join tokens back without separators
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token=UNK,
        pad_token=PAD,
        eos_token=IM_END,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
        extra_special_tokens={"image_token": IMAGE_PAD, "video_token": VIDEO_PAD},
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def corpus(n_per_difficulty: int = 4000) -> Iterable[str]:
    """Text the merges are learnt from: synth/'s prompts and reference responses, both presets."""
    from reward_model.layout import QUESTION
    from synth.registry import TASKS, iter_generate

    def plain(text: str) -> str:  # placeholders and markup are ids of their own, not merges
        for mark in ("<image>", "<video>", *MARKUP_TOKENS):
            text = text.replace(mark, "\n")
        return text

    yield f"user\nassistant\nsystem\n{QUESTION}\n[A] [B] Is A right? yes no"
    for difficulty in ("easy", "hard"):
        for g in iter_generate(list(TASKS), n_per_difficulty, seed=0, difficulty=difficulty):
            rec = g.record
            for message in rec.prompt:
                yield plain(message.content)
            yield plain(rec.extra_info.reference_response or "")


def main() -> None:
    """Rebuild `vlm/bpe_merges.json` from `corpus()` (deterministic: same synth, same file)."""
    merges = train_merges(corpus())
    MERGES_FILE.write_text(json.dumps([list(m) for m in merges], indent=0) + "\n")
    tok = build_tokenizer("bpe", merges)
    print(f"wrote {MERGES_FILE}: {len(merges)} merges, vocabulary {len(tok)}")


if __name__ == "__main__":
    main()
