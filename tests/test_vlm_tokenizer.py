"""The character tokenizer and chat template of the tiny policy."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from vlm.tokenizer import CHARACTERS, MARKUP_TOKENS, SPECIAL_TOKENS, build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_vocabulary_is_deterministic_and_complete(tok):
    # 8 control tokens + 6 markup tokens + newline + 95 printable ASCII characters
    assert len(tok) == 8 + 6 + 1 + 95 == 110
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0 == tok.pad_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") == 3 == tok.eos_token_id


def test_every_printable_character_round_trips(tok):
    text = "".join(CHARACTERS) + "  two spaces\n\nand [1.5 second] <bbox>10 20 30 40</bbox>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_one_id_per_character(tok):
    ids = tok("ab c", add_special_tokens=False)["input_ids"]
    assert ids == [tok.convert_tokens_to_ids(c) for c in "ab c"]
    assert len(ids) == 4


@pytest.mark.parametrize("special", SPECIAL_TOKENS + MARKUP_TOKENS)
def test_special_tokens_are_single_ids(tok, special):
    ids = tok(f"x{special}y", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3
    assert tok.convert_ids_to_tokens(ids[1]) == special


def test_markup_survives_decoding_but_control_tokens_do_not(tok):
    text = "<|im_start|>assistant\n<think>2+2</think><point>5 6</point><|im_end|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert (
        tok.decode(ids, skip_special_tokens=True)
        == "assistant\n<think>2+2</think><point>5 6</point>"
    )
    assert tok.decode(ids) == text


def test_unknown_characters_become_unk(tok):
    ids = tok("é€\t😀a", add_special_tokens=False)["input_ids"]
    assert ids == [tok.unk_token_id] * 4 + [tok.convert_tokens_to_ids("a")]
    assert tok.decode(ids, skip_special_tokens=True) == "a"


def test_chat_template_places_images_and_the_generation_prompt(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>How many? <video>"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many? "
        "<|vision_start|><|video_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_accepts_qwen_content_parts(tok):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Look: "}, {"type": "image"}]},
        {"role": "assistant", "content": "<think>ok</think>3"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>user\nLook: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n<think>ok</think>3<|im_end|>\n"
    )


def test_save_and_reload(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert again.chat_template == tok.chat_template
    text = "<|im_start|>user\n<think>x</think>é<|im_end|>"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert (again.pad_token_id, again.eos_token_id, again.unk_token_id) == (0, 3, 1)
