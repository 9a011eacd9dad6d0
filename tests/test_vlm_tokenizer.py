"""The tiny policy's tokenizers (characters and subword merges) and its chat template."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

from vlm.tokenizer import (
    BPE_VOCAB_SIZE,
    CHARACTERS,
    MARKUP_TOKENS,
    SPECIAL_TOKENS,
    build_tokenizer,
    load_merges,
    train_merges,
)


@pytest.fixture(scope="module", params=["char", "bpe"])
def tok(request):
    return build_tokenizer(request.param)


@pytest.fixture(scope="module")
def char_tok():
    return build_tokenizer("char")


@pytest.fixture(scope="module")
def bpe_tok():
    return build_tokenizer("bpe")


def test_vocabulary_is_deterministic_and_complete(char_tok):
    # 8 control tokens + 6 markup tokens + newline + 95 printable ASCII characters
    assert len(char_tok) == 8 + 6 + 1 + 95 == 110
    assert char_tok.get_vocab() == build_tokenizer().get_vocab()
    assert char_tok.convert_tokens_to_ids("<|endoftext|>") == 0 == char_tok.pad_token_id
    assert char_tok.convert_tokens_to_ids("<|im_end|>") == 3 == char_tok.eos_token_id


def test_bpe_vocabulary_extends_the_character_ids(char_tok, bpe_tok):
    assert len(bpe_tok) == BPE_VOCAB_SIZE
    assert bpe_tok.get_vocab() == build_tokenizer("bpe").get_vocab()
    assert all(bpe_tok.get_vocab()[t] == i for t, i in char_tok.get_vocab().items())
    assert (bpe_tok.pad_token_id, bpe_tok.eos_token_id, bpe_tok.unk_token_id) == (0, 3, 1)


def test_every_printable_character_round_trips(tok):
    text = "".join(CHARACTERS) + "  two spaces\n\nand [1.5 second] <bbox>10 20 30 40</bbox>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_random_ascii_round_trips(tok):
    rng = random.Random(0)
    pool = [*CHARACTERS, *MARKUP_TOKENS, " the", " circle", "  "]
    for _ in range(200):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_one_id_per_character(char_tok):
    ids = char_tok("ab c", add_special_tokens=False)["input_ids"]
    assert ids == [char_tok.convert_tokens_to_ids(c) for c in "ab c"]
    assert len(ids) == 4


def test_bpe_keeps_task_words_whole_and_digits_apart(char_tok, bpe_tok):
    text = "There are two shapes: a red circle at the top left. <bbox>120 45 300 999</bbox>"
    pieces = bpe_tok.convert_ids_to_tokens(bpe_tok(text, add_special_tokens=False)["input_ids"])
    for word in ("There", " are", " two", " shapes", " red", " circle", " top", " left"):
        assert word in pieces
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == list("12045300999")  # a coordinate is spelt digit by digit, as with chars
    assert len(pieces) * 2 < len(char_tok(text, add_special_tokens=False)["input_ids"])


def test_train_merges_is_deterministic_and_learns_frequent_words():
    texts = ["a red circle and a red square"] * 20 + ["7 blue stars"] * 3
    merges = train_merges(texts, vocab_size=130)
    assert merges == train_merges(texts, vocab_size=130)
    tok = build_tokenizer("bpe", merges)
    assert len(tok) == 130
    assert tok.convert_ids_to_tokens(tok(" red circle")["input_ids"]) == [" red", " circle"]
    assert not any(any(c.isdigit() for c in a + b) and len(a + b) > 1 for a, b in merges)
    with pytest.raises(ValueError, match="vocab_size must exceed"):
        train_merges(texts, vocab_size=100)


def test_bad_merges_are_named(tmp_path):
    bad = tmp_path / "merges.json"
    bad.write_text(json.dumps([["a", "b"], ["c"]]))
    with pytest.raises(ValueError, match="merges.json.*pairs"):
        load_merges(bad)
    with pytest.raises(ValueError, match="no earlier merge made"):
        build_tokenizer("bpe", [("ab", "c")])
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer("words")  # type: ignore[arg-type]
    assert len(load_merges()) == BPE_VOCAB_SIZE - 110


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


def test_tiny_bpe_preset_carries_its_tokenizer_through_save_and_load(bpe_tok, tmp_path):
    import vlm

    model, processor = vlm.create("tiny-bpe")
    assert model.config.text_config.vocab_size == len(bpe_tok) == len(processor.tokenizer)
    vlm.save(model, processor, tmp_path)
    _, again = vlm.load(tmp_path)
    text = "<|im_start|>user\nThere are two shapes: <bbox>10 20 30 40</bbox><|im_end|>"
    assert again.tokenizer(text)["input_ids"] == bpe_tok(text)["input_ids"]
    assert vlm.create("tiny")[0].config.text_config.vocab_size == 110
