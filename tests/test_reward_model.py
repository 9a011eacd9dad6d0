"""The reward model: both-order arithmetic, layout, swap augmentation, pairs, training, CLI."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
import torch
from typer.testing import CliRunner

import vlm
from hybridrl.cli import app
from reward_model.layout import QUESTION, clean_response, comparison_messages, normalise_prompt
from reward_model.model import PairInput, RewardModel, read_rm_config
from reward_model.pairs import (
    Pair,
    _shift_boxes,
    caption_rejections,
    format_rejections,
    pairs_from_records,
    read_pairs,
    swap_augment,
    write_pairs,
)
from reward_model.scoring import Comparison, combine, pair_metrics, two_way_probability
from synth.caption import parse_caption
from synth.registry import generate
from verifiers import verify


@pytest.fixture(scope="module")
def rm() -> RewardModel:
    model, processor = vlm.create("test", seed=3)
    return RewardModel(model, processor)


@pytest.fixture(scope="module")
def caption_records():
    return generate("caption", 6, seed=5)


# --------------------------------------------------------------------------- arithmetic


def test_combine_averages_both_orders_by_hand():
    # P(X≻Y | X first) = 0.8; P(Y≻X | Y first) = 0.3 → P(X≻Y | X second) = 0.7
    c = combine(0.8, 0.3)
    assert c.p == pytest.approx(0.75)
    assert (c.p_a_first, c.p_b_first) == (0.8, 0.3)
    assert c.consistent
    assert c.position_gap == pytest.approx(0.1)
    # a model that always answers "A" with 0.9: the verdict flips with the order
    biased = combine(0.9, 0.9)
    assert biased.p == pytest.approx(0.5)
    assert not biased.consistent
    assert biased.position_gap == pytest.approx(0.8)


def test_combine_rejects_non_probabilities():
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="probability"):
            combine(bad, 0.5)


def test_two_way_probability_is_softmax_of_two_logits():
    for a, b in [(2.0, -1.0), (-3.5, 0.25), (800.0, -800.0), (-800.0, 800.0), (0.0, 0.0)]:
        expected = torch.softmax(torch.tensor([a, b], dtype=torch.float64), 0)[0].item()
        assert two_way_probability(a, b) == pytest.approx(expected, abs=1e-12)


def test_pair_metrics_by_hand():
    cs = [combine(0.9, 0.2), combine(0.6, 0.7), combine(0.3, 0.8), combine(0.55, 0.35)]
    # p: 0.85, 0.45, 0.25, 0.6  -> accuracy 2/4
    # consistent: (T,T) (T,F) (F,F) (T,T) -> 3/4 ; gaps: |0.9-0.8| |0.6-0.3| |0.3-0.2| |0.55-0.65|
    m = pair_metrics(cs)
    assert m.accuracy == pytest.approx(0.5)
    assert m.consistency == pytest.approx(0.75)
    assert m.mean_gap == pytest.approx((0.1 + 0.3 + 0.1 + 0.1) / 4)
    assert m.first_accuracy == pytest.approx(0.75)
    assert m.second_accuracy == pytest.approx(0.5)
    # P(A) over all eight reads: (0.9+0.2+0.6+0.7+0.3+0.8+0.55+0.35) / 8
    assert m.mean_p_a == pytest.approx(4.4 / 8)


def test_model_scores_both_orders_in_one_forward_with_the_formula(rm, caption_records):
    pairs = list(pairs_from_records(caption_records[:3], format_share=0))
    items = [PairInput(p.prompt, p.images, p.chosen, p.rejected) for p in pairs]
    batched = rm.compare(items)
    for item, c in zip(items, batched, strict=True):
        first, second = rm.encode_pair(item)
        # each order alone, unbatched: the P(A) the batched call must reproduce
        p_first = torch.softmax(rm.choice_logits([first]), -1)[0, 0].item()
        p_second = torch.softmax(rm.choice_logits([second]), -1)[0, 0].item()
        assert c.p_a_first == pytest.approx(p_first, abs=1e-5)
        assert c.p_b_first == pytest.approx(p_second, abs=1e-5)
        assert c.p == pytest.approx(0.5 * (p_first + 1 - p_second), abs=1e-5)
    # swapping A and B mirrors the score
    swapped = rm.compare([PairInput(i.prompt, i.images, i.response_b, i.response_a) for i in items])
    for c, s in zip(batched, swapped, strict=True):
        assert c.p + s.p == pytest.approx(1.0, abs=1e-5)


def test_score_is_p_of_response_over_reference(rm, caption_records):
    rec = caption_records[0]
    images = [im.bytes for im in rec.images]
    prompt = [m.model_dump() for m in rec.prompt]
    ref = rec.extra_info.reference_response
    score = rm.score(prompt, images, "There is one shape: a red circle.", ref)
    (c,) = rm.compare([PairInput(prompt, images, "There is one shape: a red circle.", ref)])
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(c.p)


# --------------------------------------------------------------------------- layout


def test_layout_hides_thoughts_and_defuses_placeholders():
    messages = comparison_messages(
        "<image>Describe the image.",
        "<think>long thought</think>A red circle.",
        "<image> is a blue square",
        n_images=1,
    )
    text = messages[-1]["content"]
    assert text.count("<image>") == 1  # only the prompt's own placeholder
    assert "[A] <think></think>A red circle." in text
    assert "[B] [image] is a blue square" in text
    assert "long thought" not in text
    assert text.endswith(QUESTION)
    kept = clean_response("<think>x</think>y", strip_think=False)
    assert kept == "<think>x</think>y"


def test_layout_puts_images_in_front_when_the_prompt_has_no_placeholder():
    assert normalise_prompt("What is shown?", 2)[0]["content"] == "<image><image>What is shown?"
    msgs = normalise_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], 1
    )
    assert msgs[0]["content"] == "Be brief." and msgs[1]["content"] == "<image>Hi"
    with pytest.raises(ValueError, match="user message"):
        normalise_prompt([{"role": "system", "content": "x"}])


# --------------------------------------------------------------------------- pairs


def test_swap_augmentation_gives_each_pair_in_both_orders():
    pairs = [
        Pair([{"role": "user", "content": "q1"}], [], "good one", "bad one", "k/1"),
        Pair([{"role": "user", "content": "q2"}], [b"png"], "better", "worse", "k/2"),
    ]
    examples = swap_augment(pairs)
    assert len(examples) == 4
    for pair in pairs:
        mine = [e for e in examples if e.prompt == pair.prompt]
        orders = {(e.first, e.second): e.target for e in mine}
        assert orders == {(pair.chosen, pair.rejected): "A", (pair.rejected, pair.chosen): "B"}
        assert all(e.images == pair.images and e.kind == pair.kind for e in mine)


def test_training_examples_carry_the_layout_and_target():
    from reward_model.train import to_examples

    pair = Pair([{"role": "user", "content": "Which?"}], [], "<think>t</think>yes", "no", "x/y")
    first, second = to_examples(swap_augment([pair]), strip_think=True)
    assert first.target == "A" and second.target == "B"
    assert "[A] <think></think>yes\n[B] no" in first.messages[-1]["content"]
    assert "[A] no\n[B] <think></think>yes" in second.messages[-1]["content"]


def test_differing_span_quotes_the_better_words():
    from reward_model.layout import differing_span

    good = "There is one shape: a red circle at the top left."
    assert differing_span(good, good.replace("red", "blue")) == "red"
    assert differing_span(good, good.replace("top left", "bottom")) == "top left."
    # the worse one only inserts words: the better one's neighbours of the insertion
    assert differing_span("a b c", "a b x y c") == "b c"
    assert differing_span("a b", "a b x") == "b"
    assert differing_span(good, good) == ""


def test_quote_examples_ask_for_the_better_words_in_the_same_layout():
    from reward_model.layout import QUOTE_QUESTION
    from reward_model.train import to_examples

    prompt = [{"role": "user", "content": "Describe the image."}]
    pair = Pair(prompt, [], "<think>x</think>a red circle", "<think></think>a blue circle", "c/c")
    # only the hidden thoughts differ: the RM sees two identical responses, nothing to quote
    same = Pair(prompt, [], "<think>x</think>tie", "<think>y</think>tie", "c/tie")
    examples = to_examples(swap_augment([pair, same]), strip_think=True, quote_share=1.0)
    verdicts = [e for e in examples if e.domain != "rm/quote"]
    quotes = [e for e in examples if e.domain == "rm/quote"]
    assert len(verdicts) == 4 and len(quotes) == 2  # one per order of the pair that differs
    assert {q.target for q in quotes} == {"red"}
    for quote, verdict in zip(quotes, verdicts[:2], strict=True):
        assert quote.messages[-1]["content"] == verdict.messages[-1]["content"].replace(
            QUESTION, QUOTE_QUESTION
        )
    assert to_examples(swap_augment([pair]), strip_think=True, quote_share=0.0) == verdicts[:2]


def test_evidence_compares_the_quote_likelihoods_of_both_responses_words(rm, caption_records):
    from reward_model.evaluate import _target_logprobs, evaluate_pairs, format_report
    from reward_model.layout import QUOTE_QUESTION, differing_span
    from vlm.processor import to_pil

    pairs = list(pairs_from_records(caption_records, seed=2, format_share=0))
    prompt, images = pairs[0].prompt, pairs[0].images
    same = Pair(prompt, images, "<think>x</think>tie", "<think>y</think>tie", "caption/tie")
    report = evaluate_pairs(rm, [*pairs, same], batch_size=3, evidence=True)  # odd: padded chunks
    evidence = report["evidence"]
    assert evidence["overall"]["n"] == len(pairs)  # the tie has no words to quote
    # by hand, one sequence at a time (no padding): right words vs wrong words, in each order
    hits = {True: [], False: []}
    for p in pairs:
        chosen, rejected = (clean_response(r, strip_think=True) for r in (p.chosen, p.rejected))
        right, wrong = differing_span(chosen, rejected), differing_span(rejected, chosen)
        pil = [to_pil(im) for im in p.images]
        for chosen_first in (True, False):
            a, b = (p.chosen, p.rejected) if chosen_first else (p.rejected, p.chosen)
            m = comparison_messages(p.prompt, a, b, n_images=len(pil), question=QUOTE_QUESTION)
            (lr,) = _target_logprobs(rm, [m], [pil], [right])
            (lw,) = _target_logprobs(rm, [m], [pil], [wrong])
            assert abs(lr - lw) > 1e-4  # a tie would make the comparison below fragile
            hits[chosen_first].append(lr > lw)
    first, second = (sum(hits[k]) / len(pairs) for k in (True, False))
    assert evidence["overall"]["first_accuracy"] == pytest.approx(first)
    assert evidence["overall"]["second_accuracy"] == pytest.approx(second)
    assert evidence["overall"]["accuracy"] == pytest.approx((first + second) / 2)
    assert set(evidence["kinds"]) == {p.kind for p in pairs}
    assert sum(m["n"] for m in evidence["kinds"].values()) == len(pairs)
    assert "evidence (quote head)" in format_report(report)
    assert "evidence" not in evaluate_pairs(rm, pairs[:2])  # only when asked for


def test_caption_max_objects_keeps_small_scenes_and_every_other_pair(tmp_path):
    from reward_model.train import RMDataConfig, load_pairs

    records = generate("caption", 40, seed=11) + generate(["math", "counting"], 6, seed=11)
    kinds = ["colour", "shape", "count", "position", "garbled", "repeat"]
    pairs = list(pairs_from_records(records, seed=11, format_share=0.5, caption_kinds=kinds))
    write_pairs(pairs, tmp_path / "all.parquet")
    cfg = RMDataConfig(
        train=str(tmp_path / "all.parquet"),
        eval=str(tmp_path / "all.parquet"),
        caption_max_objects=1,
    )
    train, held_out = load_pairs(cfg)
    assert train == held_out
    kept = {p.kind.split("/")[0] for p in train}
    assert {"caption", "malformed", "math", "counting", "format"} <= kept
    sizes = {parse_caption(p.chosen).count for p in pairs if p.kind.startswith("caption/")}
    assert {1, 2} <= sizes  # both kinds of scene were there to keep or drop
    # exactly the (one-fact or malformed) caption pairs of scenes with two or more objects are gone
    for pair in pairs:
        captioned = pair.kind.startswith(("caption/", "malformed/"))
        big = captioned and parse_caption(pair.chosen).count > 1
        assert (pair in train) == (not big), pair.kind


def test_caption_rejections_change_exactly_the_named_fact(caption_records):
    rng = random.Random(0)
    for rec in caption_records:
        reference = rec.extra_info.reference_response
        ref_caption = reference.split("</think>")[1]
        for response, kind in caption_rejections(
            rec, rng, ["colour", "shape", "count", "position"]
        ):
            bad_caption = response.split("</think>")[1]
            assert bad_caption != ref_caption, kind
            if kind in ("colour", "shape", "position"):
                # same number of objects: only one attribute moved
                assert bad_caption.split(":")[0] == ref_caption.split(":")[0]


def test_malformed_captions_break_the_grammar_or_repeat_an_object():
    from reward_model.pairs import malformed_caption

    good = "There are three shapes: a red circle at the top left, a blue square at the centre and a green triangle at the bottom."
    rng = random.Random(0)
    garbled = {malformed_caption(good, rng, "garbled") for _ in range(60)}
    assert good not in garbled and None not in garbled
    for bad in garbled:
        facts = parse_caption(bad)
        # a word cut short, a stray number, or the phrase cut off: one object is no longer stated
        assert facts is not None and facts.count == 3, bad
        assert len(set(facts.objects) & set(parse_caption(good).objects)) == 2, bad
    assert any(re.search(r"a \d+ (red|blue|green)", b) for b in garbled)  # stray number
    assert any(re.search(r"a \d+(\.| and|,)", b) for b in garbled)  # cut off
    assert any(not re.search(r"\d", b) for b in garbled)  # a word cut short
    repeats = {malformed_caption(good, rng, "repeat") for _ in range(30)}
    for bad in repeats:
        facts = parse_caption(bad)
        assert facts.count == 3 and len(facts.objects) == 3  # the count word is kept
        assert len(set(facts.objects)) == 2 and set(facts.objects) < set(
            parse_caption(good).objects
        )
    assert len(repeats) > 1
    one = "There is one shape: a red circle at the top."
    assert malformed_caption(one, rng, "repeat") is None  # nothing to repeat in place of another
    assert (
        malformed_caption(
            good.replace("blue square", "red circle").replace("centre", "top left"), rng, "repeat"
        )
        is None
    )
    assert malformed_caption("The image is empty.", rng, "garbled") is None
    with pytest.raises(ValueError, match="unknown malformation"):
        malformed_caption(good, rng, "shuffle")


def test_malformed_pairs_are_their_own_family_and_unknown_kinds_are_named(caption_records):
    pairs = list(
        pairs_from_records(
            caption_records, seed=4, caption_kinds=["colour", "garbled", "repeat"], format_share=0
        )
    )
    kinds = {p.kind for p in pairs}
    assert (
        {"caption/colour", "malformed/garbled"}
        <= kinds
        <= {"caption/colour", "malformed/garbled", "malformed/repeat"}
    )
    for p in pairs:
        if p.kind.startswith("malformed/"):
            assert p.chosen.split("</think>")[0] == p.rejected.split("</think>")[0]  # same thoughts
            assert p.chosen != p.rejected
    with pytest.raises(ValueError, match="unknown caption kind.*'sparkle'"):
        list(pairs_from_records(caption_records, caption_kinds=["colour", "sparkle"]))


def test_verifiable_pairs_are_scored_lower_by_their_verifier():
    records = generate(
        ["math", "grounding", "counting", "puzzle", "instruction", "spot_difference"], 12, seed=2
    )
    pairs = list(pairs_from_records(records, format_share=0))
    assert {p.kind.split("/")[0] for p in pairs} >= {"math", "grounding", "counting", "puzzle"}
    for pair in pairs:
        (rec,) = [r for r in records if r.extra_info.reference_response == pair.chosen]
        name = rec.extra_info.verifier
        good = verify(name, pair.chosen, rec.ground_truth).reward
        bad = verify(name, pair.rejected, rec.ground_truth).reward
        assert bad < good, (pair.kind, pair.rejected)
        if name == "puzzle":  # another of the candidates the prompt names, not a garbled answer
            answer = pair.rejected.split("</think>")[1]
            assert answer != rec.ground_truth["answer"] and f"{answer}" in rec.user_text()


def test_wrong_boxes_stay_on_the_lattice_of_the_right_one():
    # easy scenes put boxes on a 250 grid; a wrong box off that grid would be told apart by its
    # digits alone (an RM learnt exactly that shortcut), so it moves on the same grid
    records = generate(["grounding", "spot_difference"], 40, seed=4)
    boxes = re.compile(r"<bbox>(.*?)</bbox>")
    seen = 0
    for pair in pairs_from_records(records, format_share=0):
        right = [int(v) for b in boxes.findall(pair.chosen) for v in b.split()]
        wrong = [int(v) for b in boxes.findall(pair.rejected) for v in b.split()]
        if not wrong:
            continue  # the "no box at all" rejection
        step = math.gcd(*right, 1000)
        assert step >= 50, right
        assert all(v % step == 0 for v in wrong), (pair.chosen, pair.rejected)
        assert wrong != right
        seen += 1
    assert seen >= 20
    # off-grid boxes (pixel-level truths) still move in fine steps
    rng = random.Random(0)
    moved = _shift_boxes("<bbox>13 20 113 77</bbox>", rng)
    assert moved != "<bbox>13 20 113 77</bbox>"
    x1, y1, x2, y2 = (int(v) for v in boxes.findall(moved)[0].split())
    assert (x2 - x1, y2 - y1) == (100, 57)


def test_format_rejections_break_the_format():
    from verifiers.response_format import check_format

    options = format_rejections("<think>2+2=4</think>\\boxed{4}")
    assert {k for _, k in options} == {"format/no_think", "format/no_solution", "format/unclosed"}
    assert all(not check_format(r).ok for r, _ in options)
    assert format_rejections("no think at all") == []


def test_pair_parquet_round_trip_and_errors(tmp_path, caption_records):
    pairs = list(pairs_from_records(caption_records[:2], format_share=1.0))
    path = write_pairs(pairs, tmp_path / "p.parquet")
    assert read_pairs(path) == pairs
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["q"], "chosen": ["a"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="rejected"):
        read_pairs(tmp_path / "bad.parquet")
    # a plain-text prompt column is accepted as one user message
    pq.write_table(
        pa.table({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"]}), tmp_path / "s.parquet"
    )
    (pair,) = read_pairs(tmp_path / "s.parquet")
    assert pair.prompt == [{"role": "user", "content": "q"}] and pair.images == []


# --------------------------------------------------------------------------- training + CLI


def _target_ce(rm: RewardModel, examples) -> float:
    """Mean cross-entropy of the target token (A/B) over the whole vocabulary."""
    from reward_model.layout import comparison_messages as layout

    losses = []
    ids = dict(zip("AB", rm.choice_ids, strict=True))
    for ex in examples:
        enc = rm.processor.encode(
            layout(ex.prompt, ex.first, ex.second, n_images=len(ex.images)), ex.images
        )
        batch = rm.processor.collate([enc], padding_side="left")
        with torch.no_grad():
            logits = rm.model(**batch, logits_to_keep=1).logits[0, -1]
        losses.append(-torch.log_softmax(logits.float(), -1)[ids[ex.target]].item())
    return sum(losses) / len(losses)


def test_train_cli_fine_tunes_toward_the_targets_and_records_eval(tmp_path):
    runner = CliRunner()
    data = tmp_path / "pairs"
    res = runner.invoke(
        app,
        [
            "rm", "data", "--out", str(data),
            "data.caption_prompts=4", "data.verifiable_prompts=6", "data.format_share=0.5",
            "data.eval_caption_prompts=2", "data.eval_verifiable_prompts=3",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "train:" in res.output and "caption/colour" in res.output
    train_pairs = read_pairs(data / "train.parquet")
    assert len(train_pairs) >= 16 + 4  # four caption kinds per caption prompt, plus wrong answers
    init = tmp_path / "init"
    model, processor = vlm.create("test", seed=1)
    vlm.save(model, processor, init)
    run = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "rm", "train", f"run_dir={run}", f"init={init}",
            f"data.train={data / 'train.parquet'}", f"data.eval={data / 'eval.parquet'}",
            "train.epochs=null", "train.steps=4", "train.global_batch=16", "train.micro_batch=16",
            "train.optim.lr=5e-3", "train.optim.schedule=constant", "train.optim.warmup_steps=0",
            "train.prefetch=false", f"export_to={tmp_path / 'export'}",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    final = run / "final"
    report = json.loads((final / "eval.json").read_text())
    assert report["overall"]["n"] == len(read_pairs(data / "eval.parquet"))
    assert set(report["overall"]) >= {"accuracy", "consistency", "mean_gap"}
    assert read_rm_config(final)["strip_think"] is True
    assert "accuracy" in res.output and "consistency" in res.output
    exported = {p.name for p in (tmp_path / "export").iterdir()}
    assert {"model.safetensors", "config.json", "reward_model.json", "eval.json"} <= exported
    assert "ds" not in exported and not any(n.startswith("rng_") for n in exported)

    examples = swap_augment(train_pairs[:6])
    before = _target_ce(RewardModel.load(init), examples)
    after = _target_ce(RewardModel.load(final), examples)
    assert after < before - 0.5, (before, after)

    res = runner.invoke(
        app,
        [
            "rm",
            "eval",
            "--model",
            str(final),
            "--data",
            str(data / "eval.parquet"),
            "--out",
            str(tmp_path / "e.json"),
            "--evidence",
        ],
    )
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "e.json").read_text())
    assert written["overall"] == report["overall"]
    assert written["evidence"]["overall"]["n"] == report["overall"]["n"]  # every pair differs
    assert "evidence (quote head)" in res.output

    # the same run dir again: refused with the way out named, then started over on --overwrite
    again = [
        "rm", "train", f"run_dir={run}", f"init={init}",
        f"data.train={data / 'train.parquet'}", f"data.eval={data / 'eval.parquet'}",
        "train.epochs=null", "train.steps=2", "train.global_batch=16", "train.micro_batch=16",
        "train.prefetch=false",
    ]  # fmt: skip
    res = runner.invoke(app, again)
    assert res.exit_code == 2 and "holds a previous run" in res.output, res.output
    assert "--overwrite" in res.output
    assert json.loads((final / "eval.json").read_text())["overall"] == report["overall"]  # kept
    assert "steps: 4" in (run / "rm_config.yaml").read_text()  # the refused run wrote nothing
    res = runner.invoke(app, [*again, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((final / "final.json").read_text())["last_step"] == 2


def test_make_reward_model_runs_the_two_stage_curriculum_of_configs_rm_yaml():
    import subprocess
    from pathlib import Path

    from hybridrl.config import load_config
    from reward_model.train import RMTrainConfig

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(RMTrainConfig, root / "configs" / "rm.yaml", [])
    assert cfg.data.quote_share == 1.0 and cfg.data.caption_max_objects is None
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "reward-model", "RM_BASE_MODEL=/no/rm/base",
         "BASE_MODEL=/no/base", "RM_RUN=/tmp/rmrun"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.replace("\\\n", " ")  # fmt: skip
    data, stage1, stage2 = [line for line in out.splitlines() if "hybridrl rm " in line]
    assert "rm data" in data and "--out /tmp/rmrun/pairs" in data
    assert "run_dir=/tmp/rmrun/stage1" in stage1 and "data.caption_max_objects=1" in stage1
    assert "export_to=null" in stage1 and "init=" not in stage1  # no base model: init: tiny
    assert "run_dir=/tmp/rmrun " in stage2 + " " and "init=/tmp/rmrun/stage1/final" in stage2
    assert "caption_max_objects" not in stage2


def test_cli_errors_name_the_problem(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["rm", "eval", "--model", str(tmp_path / "nope"), "--data", str(tmp_path / "x.parquet")],
    )
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["rm", "train", "init=/no/such/dir", f"run_dir={tmp_path / 'r'}"])
    assert res.exit_code == 2 and "neither a checkpoint dir" in res.output
    res = runner.invoke(app, ["rm", "train", "train.optim.lr=-1"])
    assert res.exit_code == 2 and "train.optim.lr" in res.output
    res = runner.invoke(
        app, ["rm", "data", "--out", str(tmp_path / "p"), "data.caption_kinds=[colour,sparkle]"]
    )
    assert res.exit_code == 2 and "unknown caption kind" in res.output and "sparkle" in res.output
    assert not (tmp_path / "p").exists()


def test_comparison_dataclass_properties_are_order_aware():
    c = Comparison(p=0.5, p_a_first=0.6, p_b_first=0.6)
    assert not c.consistent and c.position_gap == pytest.approx(0.2)


def test_token_budget_groups_split_long_batches_in_order():
    from reward_model.model import token_budget_groups
    from vlm.processor import Encoded

    def pair(n: int, m: int | None = None):
        return Encoded(input_ids=[0] * n), Encoded(input_ids=[0] * (m or n))

    pairs = [pair(10), pair(10, 30), pair(10), pair(100), pair(5)]
    # budget 130: 2 rows x longest row per pair, summed as a padded batch
    groups = token_budget_groups(pairs, 130)
    assert [len(g) for g in groups] == [2, 1, 1, 1]
    assert [p for g in groups for p in g] == pairs  # order kept
    assert [len(g) for g in token_budget_groups(pairs, 10_000)] == [5]
    assert [len(g) for g in token_budget_groups([pair(500)], 10)] == [1]  # never dropped


def test_model_runs_several_forwards_when_the_batch_is_over_budget(rm, caption_records):
    items = [
        PairInput(p.prompt, p.images, p.chosen, p.rejected)
        for p in pairs_from_records(caption_records[:2], format_share=0)
    ]
    whole = rm.compare(items)
    before, budget = rm.forward_passes, rm.max_batch_tokens
    rm.max_batch_tokens = 1  # one pair per forward
    try:
        split = rm.compare(items)
    finally:
        rm.max_batch_tokens = budget
    assert rm.forward_passes - before == len(items)
    for a, b in zip(whole, split, strict=True):
        assert a.p == pytest.approx(b.p, abs=1e-5)
