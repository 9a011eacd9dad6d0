"""Create, save/load, generate, and load a checkpoint laid out like a real Qwen release."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from typer.testing import CliRunner

from hybridrl.cli import app as cli
from vlm.model import count_parameters, create, generate, load, save


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def policy():
    return create("test", seed=0)


@pytest.fixture(scope="module")
def prompts():
    return [_user("What is in <image>?"), _user("<image>Count.")], [
        [_noise(112, 112, 0)],
        [_noise(50, 90, 1)],
    ]


def test_tiny_preset_matches_the_calibration_size():
    model, processor = create("tiny", seed=0)
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (128, 4, 4)
    assert (vision.embed_dim, vision.depth) == (128, 2)
    assert count_parameters(model) == 1_758_464  # about the 1.8M of DESIGN.md's calibration
    batch = processor([_user("<image>")], [[_noise(112, 112, 0)]])
    assert int((batch["input_ids"] == processor.image_token_id).sum()) == 16


def test_initialisation_is_seeded_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, _ = create("test", seed=7)
    after = torch.rand(3)
    b, _ = create("test", seed=7)
    c, _ = create("test", seed=8)
    assert torch.equal(after, expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


def test_save_load_round_trip_gives_identical_logits(policy, prompts, tmp_path):
    model, processor = policy
    save(model, processor, tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    loaded, loaded_processor = load(tmp_path)
    batch = processor(*prompts)
    again = loaded_processor(*prompts)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**again).logits)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="'gpt2' model"):
        load(tmp_path)


def test_greedy_generate_batch_of_two_images(policy, prompts):
    model, processor = policy
    batch = processor(*prompts)
    cached = generate(model, processor, batch, max_new_tokens=12)
    uncached = generate(model, processor, batch, max_new_tokens=12, use_cache=False)
    assert cached.token_ids == uncached.token_ids
    np.testing.assert_allclose(
        np.concatenate(cached.logprobs), np.concatenate(uncached.logprobs), atol=1e-5
    )
    # each sample in the left-padded batch decodes as it would alone
    for i in range(2):
        alone = generate(
            model, processor, processor([prompts[0][i]], [prompts[1][i]]), max_new_tokens=12
        )
        assert alone.token_ids[0] == cached.token_ids[i]
    assert cached.token_ids[0] != cached.token_ids[1]  # different images, different text
    for ids, lps, text in zip(cached.token_ids, cached.logprobs, cached.texts, strict=True):
        assert len(ids) == len(lps) <= 12
        assert all(lp <= 0 for lp in lps)
        assert text == processor.batch_decode([ids])[0]


def test_generate_logprobs_match_a_teacher_forced_forward(policy, prompts):
    model, processor = policy
    out = generate(model, processor, processor(*prompts), max_new_tokens=8, temperature=0.7, seed=3)
    batch = processor.training_batch(*prompts[:1], out.token_ids, prompts[1])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    logprobs = torch.log_softmax(logits[:, :-1] / 0.7, dim=-1)
    targets = batch["labels"][:, 1:]
    for row in range(2):
        keep = targets[row] != -100
        forced = logprobs[row][keep].gather(-1, targets[row][keep][:, None])[:, 0]
        np.testing.assert_allclose(forced.numpy(), out.logprobs[row], atol=1e-4)


def test_sampling_is_seeded_and_top_p_zero_is_greedy(policy, prompts):
    model, processor = policy
    batch = processor(*prompts)
    one = generate(model, processor, batch, max_new_tokens=10, temperature=1.0, seed=1)
    two = generate(model, processor, batch, max_new_tokens=10, temperature=1.0, seed=1)
    other = generate(model, processor, batch, max_new_tokens=10, temperature=1.0, seed=2)
    assert one.token_ids == two.token_ids
    assert one.token_ids != other.token_ids
    greedy = generate(model, processor, batch, max_new_tokens=10)
    nucleus = generate(model, processor, batch, max_new_tokens=10, temperature=1.0, top_p=1e-6)
    assert nucleus.token_ids == greedy.token_ids


def test_generate_rejects_right_padding_and_bad_options(policy, prompts):
    model, processor = policy
    right = processor(*prompts, padding_side="right")
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, processor, right, max_new_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, processor, processor(*prompts), top_p=0.0)


def test_cli_init_and_info(tmp_path):
    runner = CliRunner()
    out = tmp_path / "ckpt"
    done = runner.invoke(cli, ["model", "init", "--out", str(out), "--preset", "test"])
    assert done.exit_code == 0, done.output
    assert "171,872 parameters" in done.output
    shown = runner.invoke(cli, ["model", "info", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    facts = json.loads(shown.output)
    assert facts["parameters"] == 171_872
    assert facts["architecture"] == "Qwen2VLForConditionalGeneration"
    again = runner.invoke(cli, ["model", "init", "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output
    missing = runner.invoke(cli, ["model", "info", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "no config.json" in missing.output


# A checkpoint dir in the layout of a real Qwen2.5-VL release: flat legacy config.json with
# rope_scaling, a byte-level BPE tokenizer, the chat template in chat_template.json and
# top-level min/max pixels in preprocessor_config.json.
QWEN_STYLE_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


@pytest.fixture(scope="module")
def qwen_style_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen25")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=QWEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(["What is in the picture? Count the shapes."] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(root)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    flat = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vision_config": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
        },
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**flat)).save_pretrained(root)
    (root / "config.json").write_text(json.dumps(flat))  # the release's own flat layout
    (root / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_STYLE_TEMPLATE}))
    (root / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "min_pixels": 3136,
                "max_pixels": 6272,  # 8 tokens at most
                "patch_size": 14,
                "temporal_patch_size": 2,
                "merge_size": 2,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor",
            }
        )
    )
    return root


def test_a_real_qwen25_layout_loads_through_the_same_entry_point(qwen_style_dir):
    model, processor = load(qwen_style_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.settings.max_pixels == 6272
    assert processor.settings.video_levels == (640, 512, 384, 256, 160, 128)  # Seed defaults
    text = processor.render(_user("<image>Count."))
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>Count." in text
    # 112x112 under max 6272 px: scale sqrt(12544/6272) = 1.414; 112/1.414/28 = 2.83 -> 56x56
    batch = processor(
        [_user("<image>Count."), _user("What is in <image>?")],
        [
            [_noise(112, 112, 0)],
            [_noise(56, 112, 1)],
        ],
    )
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 8]]
    assert (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist() == [4, 8]
    out = generate(model, processor, batch, max_new_tokens=5)
    assert [len(ids) for ids in out.token_ids] == [len(lp) for lp in out.logprobs]
    with torch.no_grad():
        assert model(**batch).logits.shape[-1] == model.config.text_config.vocab_size
