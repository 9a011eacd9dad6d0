"""Pure parts of pretrain/: the greedy balancer, LR schedules, configs, data views, fits."""

import math
import random

import numpy as np
import pytest

from hybridrl.config import ConfigError, load_config
from pretrain.balance import (
    balance,
    greedy_assign,
    imbalance,
    rank_loads,
    round_robin_assign,
    sample_cost,
    split_by_tokens,
)
from pretrain.config import PretrainConfig, TrainConfig
from pretrain.data import SynthMixSource, check_view
from pretrain.scaling import fit_accuracy, fit_domains, power_law
from pretrain.schedule import lr_at

# --------------------------------------------------------------------------- balancer


def _skewed(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    sides = [rng.choice([4, 4, 4, 8, 16]) for _ in range(n)]  # patches per side
    return [sample_cost([s * s], rng.randint(50, 200)) for s in sides]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("ranks", [2, 3, 8])
def test_balance_assigns_each_sample_once_and_never_loses_to_round_robin(seed, ranks):
    costs = _skewed(37, seed)
    shards = balance(costs, ranks)
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(len(costs)))
    assert all(shards), "every rank gets work when samples >= ranks"
    rr = round_robin_assign(len(costs), ranks)
    assert max(rank_loads(costs, shards)) <= max(rank_loads(costs, rr))


def test_greedy_is_deterministic_and_beats_round_robin_on_skew():
    costs = _skewed(64, 7)
    assert greedy_assign(costs, 4) == greedy_assign(list(costs), 4)
    assert imbalance(costs, greedy_assign(costs, 4)) < imbalance(costs, round_robin_assign(64, 4))


def test_balance_falls_back_when_round_robin_happens_to_be_better():
    # LPT gives 10/8 here; round-robin's order happens to split 9/9
    costs = [3.0, 5.0, 3.0, 4.0, 3.0]
    assert max(rank_loads(costs, greedy_assign(costs, 2))) == 10
    assert max(rank_loads(costs, balance(costs, 2))) == 9


def test_balancer_edge_cases():
    assert greedy_assign([1.0], 3) == [[0], [], []]
    assert greedy_assign([0.0, 0.0, 0.0], 3) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="n_ranks"):
        greedy_assign([1.0], 0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_cost([-1], 3)
    assert sample_cost([8, 4], 10) == 64 + 16 + 10


@pytest.mark.parametrize("seed", range(10))
def test_micro_batches_cover_the_shard_within_the_token_cap(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(20, 300) for _ in range(40)]
    groups = split_by_tokens(lengths, 16, 2048)
    assert sorted(i for g in groups for i in g) == list(range(40))
    for g in groups:
        assert len(g) <= 16
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 2048
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    assert padded < 40 * max(lengths), "less padding than one batch padded to the longest"
    assert split_by_tokens(lengths, 16) == split_by_tokens(lengths, 16, None)
    assert [len(g) for g in split_by_tokens([5, 5, 5], 2)] == [2, 1]
    assert split_by_tokens([500, 10], 8, 100) == [[1], [0]]  # too long: a micro-batch alone


# --------------------------------------------------------------------------- schedules


def test_warmup_then_cosine_to_min():
    kw = dict(lr=1.0, min_lr=0.1, total_steps=110, warmup_steps=10, schedule="cosine")
    lrs = [lr_at(s, **kw) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)), "monotone decay"
    assert lrs[-1] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 50 / 99)))


def test_constant_schedule_has_no_warmup_and_never_moves():
    kw = dict(lr=5.22e-6, min_lr=5.22e-6, total_steps=50, warmup_steps=0, schedule="constant")
    assert {lr_at(s, **kw) for s in range(50)} == {5.22e-6}


def test_paper_and_tiny_profiles_share_the_stage_structure():
    for path in ("configs/pretrain_paper.yaml", "configs/pretrain_tiny.yaml"):
        cfg = load_config(PretrainConfig, path)
        s0, s1, s2 = cfg.stage0, cfg.stage1, cfg.stage2
        assert (s0.trainable, s1.trainable, s2.trainable) == ("adapter", "all", "all")
        assert s0.optim.schedule == s1.optim.schedule == "cosine"
        assert s0.optim.warmup_steps > 0 and s1.optim.warmup_steps > 0
        assert s2.optim.schedule == "constant" and s2.optim.warmup_steps == 0
        assert s2.continue_optimizer and not s1.continue_optimizer
        assert s2.seq_len == 4 * s1.seq_len == 4 * s0.seq_len
        assert s2.optim.lr == s1.optim.min_lr
        assert s1.optim.betas == (0.9, 0.95) and s1.optim.weight_decay == 0.1
    paper = load_config(PretrainConfig, "configs/pretrain_paper.yaml")
    assert (paper.stage0.optim.lr, paper.stage0.optim.min_lr) == (2.52e-4, 4.5e-5)
    assert (paper.stage1.optim.lr, paper.stage1.optim.min_lr) == (5.22e-5, 5.22e-6)
    assert paper.stage0.optim.warmup_steps == 100 and paper.stage1.optim.warmup_steps == 500
    assert paper.stage1.tokens == 3e12 and paper.stage2.seq_len == 131072


def test_rope_sections_must_fit_the_head():
    from pretrain.config import RopeConfig
    from pretrain.stages import fresh_model

    with pytest.raises(ValueError, match="summing to 16"):
        fresh_model("test", 0, RopeConfig(theta=10.0, mrope_section=[4, 4, 4]))
    with pytest.raises(ValueError, match="fresh preset"):
        fresh_model("runs/nowhere", 0, RopeConfig())


def test_param_groups_split_vision_from_language_and_matrices_from_the_rest():
    import vlm
    from pretrain.freeze import param_groups, set_trainable

    model, _ = vlm.create("test")
    set_trainable(model, "all")
    groups = param_groups(model, 0.1, vision_lr_scale=0.25)
    vision = {id(p) for p in model.model.visual.parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each exactly once
    for g in groups:
        in_vision = {id(p) in vision for p in g["params"]}
        matrices = {p.ndim >= 2 for p in g["params"]}
        assert len(in_vision) == 1 and len(matrices) == 1
        assert g["lr_scale"] == (0.25 if in_vision == {True} else 1.0)
        assert g["weight_decay"] == (0.1 if matrices == {True} else 0.0)
    set_trainable(model, "no_vision")  # the merger still trains, at the vision factor
    merger = {id(p) for p in model.model.visual.merger.parameters()}
    groups = param_groups(model, 0.1, vision_lr_scale=0.25)
    scaled = {id(p) for g in groups if g["lr_scale"] == 0.25 for p in g["params"]}
    assert scaled == merger


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="stage1.optim.lr"):
        load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["stage1.optim.lr=fast"])
    with pytest.raises(ConfigError, match="min_lr"):
        load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["stage1.optim.min_lr=1"])
    with pytest.raises(ValueError, match="steps, tokens or epochs"):
        TrainConfig().total_steps()
    assert TrainConfig(tokens=1e6, global_batch=10, seq_len=1000).total_steps() == 100
    assert TrainConfig(epochs=2, global_batch=10).total_steps(dataset_size=55) == 11


# --------------------------------------------------------------------------- data views


def test_synth_mix_is_deterministic_and_follows_the_weights():
    mix = {"caption": 1.0, "grounding": 1.0, "text": 2.0, "sft/puzzle": 0.0}
    a = SynthMixSource(mix, seed=3)
    b = SynthMixSource(mix, seed=3)
    ex = [a.get(i) for i in range(200)]
    assert [(e.domain, e.target) for e in ex[:20]] == [
        (e.domain, e.target) for e in (b.get(i) for i in range(20))
    ]
    domains = [e.domain for e in ex]
    assert "sft/puzzle" not in domains
    assert 0.35 < domains.count("text") / 200 < 0.65
    ground = next(e for e in ex if e.domain == "grounding")
    assert ground.target.startswith("<bbox>") and ground.target.endswith("</bbox>")
    assert len(ground.images) == 1 and "<image>" in ground.messages[0]["content"]
    text = next(e for e in ex if e.domain == "text")
    assert not text.images and "=" in text.target


def test_objects_view_names_each_shape_in_sorted_order():
    src = SynthMixSource({"objects": 1.0}, seed=5)
    for i in range(10):
        ex = src.get(i)
        names = ex.target.split(", ")
        assert names == sorted(names) and all(len(n.split()) == 2 for n in names)
        assert ex.domain == "objects" and len(ex.images) == 1
        caption = SynthMixSource({"caption": 1.0}, seed=5).get(i).target
        for name in names:  # the same scene as the caption view draws
            assert name.split()[0] in caption and name.split()[1] in caption


DRAWN = {"puzzle": {"options_in": "image"}}  # the options and pick views read the drawn row


def test_options_view_names_the_cell_under_each_letter():
    src = SynthMixSource({"options": 1.0}, seed=2, task_overrides=DRAWN)
    puzzles = SynthMixSource({"sft/puzzle": 1.0}, seed=2, task_overrides=DRAWN)
    for i in range(10):
        ex, ref = src.get(i), puzzles.get(i).target  # the same puzzle drawn both ways
        named = dict(part.split(" ", 1) for part in ex.target.split(", "))
        assert list(named) == ["A", "B", "C", "D"] and ex.domain == "options"
        letter = ref.rsplit("</think>", 1)[1]
        missing = ref.split("the missing one is ", 1)[1].split(":")[0]
        assert named[letter] == missing, (ex.target, ref)


def test_pick_view_asks_for_the_letter_of_a_named_option():
    picks = SynthMixSource({"pick": 1.0}, seed=2, task_overrides=DRAWN)
    named = SynthMixSource({"options": 1.0}, seed=2, task_overrides=DRAWN)
    letters = set()
    for i in range(20):
        ex, listed = picks.get(i), named.get(i).target  # the same puzzle drawn both ways
        what = ex.messages[0]["content"].split("Which letter is the ", 1)[1].rstrip("?")
        assert f"{ex.target} {what}" in listed.split(", "), (ex.target, what, listed)
        assert ex.domain == "pick" and len(ex.images) == 1
        letters.add(ex.target)
    assert letters == {"A", "B", "C", "D"}  # not always the answer's slot


@pytest.mark.parametrize("view", ["options", "pick"])
def test_drawn_option_views_refuse_puzzles_that_list_their_options(view):
    # the easy preset lists the candidates in the prompt: no row of them in the image to read
    with pytest.raises(ValueError, match="options_in=image"):
        SynthMixSource({view: 1.0}, seed=2).get(0)


def test_grounding_varied_view_puts_a_bridge_between_image_and_question():
    from pretrain.data import _BRIDGES

    varied = SynthMixSource({"grounding_varied": 1.0}, seed=3)
    plain = SynthMixSource({"grounding": 1.0}, seed=3)
    bridges = set()
    for i in range(40):
        ex, ref = varied.get(i), plain.get(i)  # the same scene drawn both ways
        text = ex.messages[0]["content"]
        head, question = text.split("Box the ", 1)
        assert head.startswith("<image>") and head.removeprefix("<image>") in _BRIDGES
        assert ref.messages[0]["content"] == f"<image>Box the {question}"
        assert ex.target == ref.target and ex.target.startswith("<bbox>")
        assert ex.domain == "grounding"
        bridges.add(head)
    assert len(bridges) >= 4  # the distance from image to question varies


def test_spot_view_boxes_the_changes_of_the_same_image_pair():
    src = SynthMixSource({"spot": 1.0}, seed=4)
    full = SynthMixSource({"sft/spot_difference": 1.0}, seed=4)
    for i in range(10):
        ex, ref = src.get(i), full.get(i)  # the same pair of images drawn both ways
        assert ex.domain == "spot" and len(ex.images) == 2
        assert ex.messages[0]["content"].count("<image>") == 2
        assert ex.target.startswith("<bbox>") and ref.target.endswith(ex.target)
        assert [im.tobytes() for im in ex.images] == [im.tobytes() for im in ref.images]


def test_spot_view_follows_the_side_by_side_layout():
    # one image holding both scenes: one placeholder, or the processor rejects the example
    overrides = {"spot_difference": {"layout": "side_by_side"}}
    src = SynthMixSource({"spot": 1.0}, seed=4, task_overrides=overrides)
    for i in range(5):
        ex = src.get(i)
        assert len(ex.images) == 1 and ex.images[0].size == (224, 112)
        assert ex.messages[0]["content"] == "<image>Box the differences."


def test_text_view_practises_the_math_tasks_arithmetic():
    src = SynthMixSource(
        {"text": 1.0}, task_overrides={"math": {"kinds": ["add"], "max_operand": 9}}
    )
    for i in range(30):
        ex = src.get(i)
        a, rest = ex.target.split("+")
        b, total = rest.split("=")
        assert int(a) <= 9 and int(b) <= 9 and int(total) == int(a) + int(b), ex.target
        assert not ex.images and ex.domain == "text"


def test_counting_view_lists_points_then_the_count():
    src = SynthMixSource({"counting": 1.0}, seed=0)
    for i in range(10):
        ex = src.get(i)
        n = int(ex.target.split()[-1])
        assert ex.target.count("<point>") == n


def test_unknown_view_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data view 'sft/nope'"):
        check_view("sft/nope")
    with pytest.raises(ValueError, match="negative"):
        SynthMixSource({"caption": -1.0})


# --------------------------------------------------------------------------- fits


def test_power_law_recovers_its_parameters():
    d = np.geomspace(1e3, 1e7, 30)
    loss = np.exp(-0.1817 * np.log(d) + (-0.7011))
    a, b = power_law(d, loss)
    assert (a, b) == pytest.approx((0.1817, -0.7011))
    rows = [{"tokens/ocr": float(x), "loss/ocr": float(y)} for x, y in zip(d, loss, strict=True)]
    fit = fit_domains(rows, skip_frac=0.0)["ocr"]
    assert fit["a"] == pytest.approx(0.1817) and fit["r2"] == pytest.approx(1.0)


def test_accuracy_is_fit_linear_in_log_loss():
    rows = [
        {"eval/math/loss": L, "eval/math/accuracy": -0.0968 * math.log(L) + 0.7139}
        for L in (2.0, 1.0, 0.5, 0.25)
    ]
    fit = fit_accuracy(rows)["math"]
    assert (fit["slope"], fit["intercept"]) == pytest.approx((-0.0968, 0.7139))
