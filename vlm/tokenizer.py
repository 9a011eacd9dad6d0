"""The tiny policy's tokenizer: one token per character, built here deterministically.

A character vocabulary over printable ASCII plus newline means any task text tokenizes
(anything else becomes ``<unk>``), and the model never has to learn subword spellings of
coordinates. The special tokens use Qwen2-VL's names so that the same processor and chat
layout serve a real Qwen2-VL checkpoint.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

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


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer with special tokens and chat template."""
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *MARKUP_TOKENS, *CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Every character is its own pre-token; [\s\S] also matches the newline.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()  # join characters back without separators
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
