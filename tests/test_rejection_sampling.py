"""Rejection-sampling fine-tuning: the filters, pass-rate selection, policy resolution, and a
tiny iteration through the real CLI (sampling, verifiers, the shared SFT trainer, eval) that
chains into a second one."""

import json
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from typer.testing import CliRunner

import synth
import verifiers
import vlm
from hybridrl.cli import app
from hybridrl.config import ConfigError, load_config
from hybridrl.records import load_image, read_records, write_records
from pretrain.data import RecordSource
from rl.rejection import (
    FiltersConfig,
    OverthinkingFilter,
    RepetitionFilter,
    RSConfig,
    Sample,
    SelectConfig,
    find_repetition,
    overthinks,
    pass_rate,
    previous_count,
    reject_reason,
    select_responses,
)
from rl.rs_iteration import newest_actor, next_iteration, prepare_dir, resolve_policy
from synth import get_task
from synth.task import config_with

REPO = Path(__file__).resolve().parents[1]
HYBRIDRL = str(Path(sys.executable).parent / "hybridrl")
VERIFIABLE = [
    "math",
    "grounding",
    "counting",
    "spot_difference",
    "puzzle",
    "instruction",
    "temporal",
]


# --------------------------------------------------------------------------- filters


def test_repetition_detected_in_degenerate_responses():
    cfg = RepetitionFilter()
    looping = "<think>the red circle is at the top left top left top left top left top left"
    unit, times = find_repetition(looping, cfg)
    assert times >= 4 and len(unit) * times >= cfg.min_span
    assert unit.strip() in {"top left", "left top"}
    assert find_repetition("<think>" + "7" * 30 + "</think>7", cfg) == ("7", 30)
    assert find_repetition("xyz" * 8, cfg) == ("xyz", 8)
    # a 6-character unit reaches min_span 24 in 4 repeats though a 5-character one needs 5
    assert find_repetition("abcdef" * 4, cfg) == ("abcdef", 4)
    assert find_repetition("abcdef" * 3, cfg) is None
    # short runs inside ordinary answers are not repetition
    assert find_repetition("<think>0 0 1000 1000</think><bbox>0 0 1000 1000</bbox>", cfg) is None
    assert find_repetition("abababab", cfg) is None  # 8 chars, below min_span
    assert find_repetition("abababab", RepetitionFilter(min_span=8)) == ("ab", 4)


def test_synth_reference_responses_pass_every_filter_of_the_default_config():
    cfg = load_config(RSConfig, REPO / "configs" / "rs.yaml").filters
    assert {"puzzle", "counting", "math", "temporal"} <= set(cfg.consistency)
    for difficulty in ("easy", "hard"):
        records = synth.generate(VERIFIABLE, 70, seed=3, split="train", difficulty=difficulty)
        for r in records:
            ref = r.extra_info.reference_response
            assert reject_reason(ref, None, cfg, r.extra_info.task) is None, ref


def test_lucky_guesses_are_inconsistent():
    cfg = load_config(RSConfig, REPO / "configs" / "rs.yaml").filters
    guess = "<think>colours repeat red red; the missing one is blue triangle: A</think>B"
    assert reject_reason(guess, None, cfg, "puzzle") == "inconsistent"
    assert reject_reason(guess, None, cfg, "grounding") is None  # no rule for that task
    assert reject_reason(guess.replace(": A<", ": B<"), None, cfg, "puzzle") is None
    named = "<think>colours repeat red blue; the missing one is red circle</think>red circle"
    assert reject_reason(named, None, cfg, "puzzle") is None
    assert reject_reason(named.replace(">red circle", ">blue circle"), None, cfg, "puzzle")
    seen = "<think>the red circle is first seen at [3.0 second]</think>\\boxed{3}"
    assert reject_reason(seen, None, cfg, "temporal") is None  # 3.0 == 3
    assert reject_reason(seen.replace("{3}", "{4}"), None, cfg, "temporal") == "inconsistent"
    assert reject_reason("<think>circles: (1,2); 1</think>3", None, cfg, "counting")
    # a think block that states no answer is not judged
    assert reject_reason("<think>hmm</think>B", None, cfg, "puzzle") is None
    with pytest.raises(ConfigError, match="needs a capture group"):
        load_config(RSConfig, None, ["filters.consistency.puzzle.think=':'"])


def test_overthinking_absolute_and_relative_bounds():
    cfg = OverthinkingFilter(max_think_chars=256, max_ratio_to_shortest=3.0, ratio_min_chars=32)
    assert overthinks(257, None, cfg) and not overthinks(256, None, cfg)
    assert overthinks(121, 40, cfg) and not overthinks(120, 40, cfg)
    # a very short sibling does not make ordinary thinking "over": floor of 32 chars
    assert not overthinks(96, 5, cfg) and overthinks(97, 5, cfg)
    assert not overthinks(10_000, None, OverthinkingFilter(max_think_chars=None))

    rng = random.Random(0)
    long_think = "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(300))
    response = f"<think>{long_think}</think>C"
    assert find_repetition(response, RepetitionFilter()) is None  # only the length is wrong
    assert reject_reason(response, None, FiltersConfig()) == "overthinking"
    assert reject_reason("<think>the answer is C</think>C", 21, FiltersConfig()) is None


def test_patterns_drop_matches_and_bad_regex_is_a_config_error(tmp_path):
    cfg = FiltersConfig(patterns=[r"(?i)i am not sure", r"\\boxed\{\}"])
    assert reject_reason("<think>I am NOT sure</think>C", None, cfg) == "pattern:0"
    assert reject_reason("<think>1+1</think>\\boxed{}", None, cfg) == "pattern:1"
    assert reject_reason("<think>1+1=2</think>\\boxed{2}", None, cfg) is None
    with pytest.raises(ConfigError, match=r"filters.patterns.*not a valid regex"):
        load_config(RSConfig, None, ["filters.patterns=['(unclosed']"])
    with pytest.raises(ConfigError, match="min_pass_rate"):
        load_config(RSConfig, None, ["select.min_pass_rate=0.8", "select.max_pass_rate=0.5"])


# --------------------------------------------------------------------------- selection


def _s(prompt, text, correct, error=None):
    return Sample(prompt, text, correct, format_ok=True, reward=float(correct), error=error)


def test_pass_rate_selection_dedupe_cap_and_counts():
    ok = "<think>a</think>B"
    samples = [
        # prompt 0: always solved -> too easy above max_pass_rate 0.75
        *[_s(0, ok, True) for _ in range(4)],
        # prompt 1: never solved
        *[_s(1, "<think>a</think>C", False) for _ in range(4)],
        # prompt 2: 1 of 4
        _s(2, "<think>count 3</think>3", True),
        *[_s(2, "<think>x</think>4", False) for _ in range(3)],
        # prompt 3: 3 of 4, one a whitespace-duplicate, one looping; cap 2 keeps the shortest
        _s(3, "<think>the  long way round</think>B", True),
        _s(3, "<think>the long way round</think>B", True),
        _s(3, "<think>b</think>B", True),
        _s(3, "<think>" + "ab" * 20 + "</think>B", False),
        # prompt 4: a verifier error is left out of the pass rate: 1 of 3 scored
        _s(4, ok, True),
        _s(4, "<think>y</think>D", False),
        _s(4, "<think>y</think>A", False),
        _s(4, "<think>z</think>B", False, error="timeout"),
        # prompt 5: correct but every correct response loops
        _s(5, "<think>" + "left " * 10 + "</think>B", True),
        _s(5, "<think>q</think>A", False),
    ]
    tasks = ["puzzle", "puzzle", "counting", "puzzle", "puzzle", "puzzle"]
    sel = select_responses(
        samples, 6, SelectConfig(max_pass_rate=0.75, max_per_prompt=2), FiltersConfig(), tasks
    )
    assert sel.pass_rates == [1.0, 0.0, 0.25, 0.75, pytest.approx(1 / 3), 0.5]
    assert [(s.prompt, s.text) for s in sel.kept] == [
        (2, "<think>count 3</think>3"),
        (3, "<think>the  long way round</think>B"),
        (3, "<think>b</think>B"),
        (4, ok),
    ]
    assert sel.verdicts[:4] == ["too_easy"] * 4
    assert sel.verdicts[4:8] == ["incorrect"] * 4
    assert sel.verdicts[12:16] == ["kept", "duplicate", "kept", "incorrect"]
    assert sel.verdicts[19] == "error"
    assert sel.verdicts[20] == "repetition"
    st = sel.stats
    assert st["prompt_verdicts"] == {
        "unscored": 0,
        "unsolved": 1,
        "too_hard": 0,
        "too_easy": 1,
        "selected": 4,
    }
    assert st["sample_verdicts"]["repetition"] == 1
    assert st["sample_verdicts"]["duplicate"] == 1
    assert st["kept"] == 4 and st["kept_prompts"] == 3
    assert st["per_task"]["counting"]["kept"] == 1 and st["per_task"]["puzzle"]["kept"] == 3

    # the cap: one per prompt keeps prompt 3's shortest; a floor of 0.3 drops prompt 2
    sel = select_responses(
        samples, 6, SelectConfig(min_pass_rate=0.3, max_per_prompt=1), FiltersConfig(), tasks
    )
    assert [(s.prompt, s.text) for s in sel.kept] == [(3, "<think>b</think>B"), (4, ok)]
    assert sel.verdicts[8] == "too_hard" and sel.verdicts[12] == "over_cap"
    assert sel.verdicts[:4] == ["too_easy"] * 4 and sel.verdicts[20] == "repetition"
    assert pass_rate([_s(0, ok, True, error="x")]) is None

    # per-task bounds: a floor for counting only (prompt 2, 1 of 4) leaves the puzzles alone
    per_task = SelectConfig(per_task={"counting": {"min_pass_rate": 0.3}})
    sel = select_responses(samples, 6, per_task, FiltersConfig(), tasks)
    assert [s.prompt for s in sel.kept] == [3, 3, 4]
    assert sel.stats["per_task"]["counting"]["prompt_verdicts"]["too_hard"] == 1


def test_previous_round_share():
    assert previous_count(48, 1.0, 512) == 48
    assert previous_count(48, 2.5, 100) == 100
    assert previous_count(0, 1.0, 512) == 0
    assert previous_count(3, None, 512) == 512


# --------------------------------------------------------------------------- policy resolution


def _ckpt(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_policy_resolution_and_iteration_numbers(tmp_path):
    rl_run = tmp_path / "rl"
    _ckpt(rl_run / "step_2" / "actor")
    newest = _ckpt(rl_run / "step_10" / "actor")
    (rl_run / "step_12").mkdir()  # a checkpoint without an actor is not one
    base = _ckpt(tmp_path / "base")
    cfg = RSConfig(run_dir=str(tmp_path / "rs"), rl_run=str(rl_run), base_model=str(base))
    assert newest_actor(rl_run) == newest
    assert resolve_policy(cfg, 1)[0] == newest
    assert resolve_policy(cfg.model_copy(update={"rl_run": None}), 1)[0] == base
    assert resolve_policy(cfg.model_copy(update={"policy": str(rl_run)}), 1)[0] == newest
    with pytest.raises(FileNotFoundError, match="iteration 1's model"):
        resolve_policy(cfg, 2)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint dir"):
        resolve_policy(cfg.model_copy(update={"policy": str(tmp_path / "nothing")}), 1)

    assert next_iteration(cfg.run_dir) == 1
    k, out = prepare_dir(cfg, None, overwrite=False)
    assert (k, out.name) == (1, "iter_1")
    (out / "samples.parquet").write_text("partial")
    with pytest.raises(FileExistsError, match="unfinished iteration 1.*--overwrite"):
        prepare_dir(cfg, None, overwrite=False)
    (out / "summary.json").write_text("{}")
    assert next_iteration(cfg.run_dir) == 2
    with pytest.raises(FileExistsError, match="completed iteration 1"):
        prepare_dir(cfg, 1, overwrite=False)
    k, out = prepare_dir(cfg, 1, overwrite=True)
    assert k == 1 and list(out.iterdir()) == []


def test_bad_input_is_a_clean_error_before_any_file(tmp_path):
    base = _ckpt(tmp_path / "base")
    run_dir = tmp_path / "rs"
    common = ["rs-iteration", f"run_dir={run_dir}", f"base_model={base}", "rl_run=null"]
    cases = [
        (["prompts.tasks=[bogus]"], 1, "unknown synth task(s) ['bogus']"),
        ([f"policy={tmp_path / 'nope'}"], 1, "neither a checkpoint dir"),
        ([f"prompts.data={tmp_path / 'none.parquet'}"], 1, "no such records file"),
        (["sft.init=/nowhere"], 1, "sft.init '/nowhere'"),
        (["select.max_pass_rate=2"], 2, "select.max_pass_rate"),
        (["--iteration", "0"], 1, "iteration must be at least 1"),
    ]
    for args, code, message in cases:
        result = CliRunner().invoke(app, [*common, *args])
        assert result.exit_code == code, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not run_dir.exists()


# --------------------------------------------------------------------------- end to end


# puzzles answered by letter (the hard preset's drawn options): a random letter is one token
LETTERED = {"puzzle": config_with(get_task("puzzle").preset("easy"), {"options_in": "image"})}


@pytest.fixture(scope="module")
def puzzle_policy(tmp_path_factory):
    """A "test"-preset policy taught the answer layout on lettered puzzle prompts, the letter at
    random, so sampled answers are right about a quarter of the time (plain torch loop, ~10 s)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rs_policy")
    records = synth.generate(["puzzle"], 48, seed=5, split="train", configs=LETTERED)
    model, processor = vlm.create("test", seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    messages = [[m.model_dump() for m in r.prompt] for r in records]
    images = [[load_image(i) for i in r.images] for r in records]
    model.train()
    for _ in range(45):
        idx = rng.sample(range(len(records)), 16)
        targets = ["<think>x</think>" + rng.choice("ABCD") for _ in idx]
        batch = processor.training_batch(
            [messages[i] for i in idx], targets, [images[i] for i in idx], [[] for _ in idx]
        )
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    for name, n, seed, split in (("cold", 12, 6, "train"), ("test", 4, 7, "test")):
        records = synth.generate(["puzzle"], n, seed=seed, split=split, configs=LETTERED)
        write_records(records, root / f"{name}.parquet")
    return root


def _verified(url: str, metric: str = "hybridrl_verifications_total{") -> float:
    """Items the verifier service has verified so far (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric)
    )


def _run(args, cwd):
    proc = subprocess.run(
        [HYBRIDRL, "rs-iteration", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    return proc


def test_tiny_iteration_through_the_cli_chains(puzzle_policy, verifier_server, tmp_path):
    root = puzzle_policy
    config = {
        "run_dir": str(tmp_path / "rs"),
        "rl_run": None,
        "base_model": str(tmp_path / "no-base-model"),  # chaining must not fall back to it
        "threads": 1,
        "prompts": {
            "n": 8,
            "tasks": ["puzzle"],
            "seed": 50,
            "task_overrides": {"puzzle": {"options_in": "image"}},
        },
        "sampling": {"n": 4, "max_new_tokens": 12, "micro_batch_size": 32},
        "select": {"min_pass_rate": 0.0, "max_pass_rate": 1.0, "max_per_prompt": 2},
        "mix": {"cold_start": str(root / "cold.parquet"), "ratio": None, "max_previous": 4},
        "sft": {
            "train": {
                "name": "rs_sft",
                "steps": 2,
                "global_batch": 4,
                "micro_batch": 4,
                "seq_len": 512,
                "log_every": 1,
                "prefetch": False,
                "optim": {"lr": 1e-4, "min_lr": 1e-5},
            }
        },
        "eval": {"data": str(root / "test.parquet"), "n_per_task": 4, "max_new_tokens": 12},
    }
    cfg_path = tmp_path / "rs.yaml"
    cfg_path.write_text(yaml.safe_dump(config))

    first = _run(["--config", str(cfg_path), f"policy={root / 'policy'}"], REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    it1 = tmp_path / "rs" / "iter_1"
    for name in (
        "config.yaml",
        "prompts.parquet",
        "samples.parquet",
        "kept.parquet",
        "sft_data.parquet",
        "filter_stats.json",
        "eval_before.json",
        "eval_after.json",
        "summary.md",
        "summary.json",
        "model/config.json",
        "sft/metrics.jsonl",
    ):
        assert (it1 / name).is_file(), name
    summary = json.loads((it1 / "summary.json").read_text())
    assert summary["policy"] == str(root / "policy")
    assert "acc before" in first.stdout and "rs iteration 1 done" in first.stdout

    # every sampled response is in samples.parquet with its verdict; kept ones verify correct
    samples = pq.read_table(it1 / "samples.parquet").to_pylist()
    assert len(samples) == 8 * 4 == summary["samples"]
    kept = read_records(it1 / "kept.parquet")
    assert 0 < len(kept) == summary["kept"] == sum(s["verdict"] == "kept" for s in samples)
    assert len(kept) < len(samples)  # some sampled answers were wrong
    for r in kept:
        res = verifiers.verify(
            r.extra_info.verifier,
            r.extra_info.response,
            r.reward_model.ground_truth,
            {"require_format": True},
        )
        assert res.correct, r.extra_info.response
        assert r.extra_info.response != r.extra_info.reference_response
    stats = json.loads((it1 / "filter_stats.json").read_text())
    assert stats["kept"] == len(kept) and stats["samples"] == 32
    assert stats["correct"] == sum(s["correct"] for s in samples)

    # the SFT data: kept responses plus the cold start, read by the trainer's dataset
    source = RecordSource([it1 / "sft_data.parquet"], field_name="auto")
    assert source.size == len(kept) + 4 == summary["sft_records"]
    targets = [source.get(i).target for i in range(source.size)]
    assert sorted(r.extra_info.response for r in kept) == sorted(
        t for t in targets if t in {r.extra_info.response for r in kept}
    )
    assert sum(t.startswith("<think>x</think>") for t in targets) >= len(kept)
    assert json.loads((it1 / "eval_after.json").read_text())["model"] == str(it1 / "model")

    # iteration 2: auto-numbered, samples with iteration 1's model, mixes iteration 1's data,
    # verifies through the verifier service
    verified_before = _verified(verifier_server.url)
    second = _run(["--config", str(cfg_path), f"verify.url={verifier_server.url}"], REPO)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    it2 = tmp_path / "rs" / "iter_2"
    s2 = json.loads((it2 / "summary.json").read_text())
    assert s2["iteration"] == 2
    assert s2["policy"] == str(it1 / "model") and s2["sft_init"] == str(it1 / "model")
    assert s2["previous_data"] == str(it1 / "sft_data.parquet")
    assert s2["prompts"] != summary["prompts"]  # a fresh synth seed
    assert (it2 / "model" / "config.json").is_file()
    samples2 = pq.read_table(it2 / "samples.parquet").to_pylist()
    # format breakers never reach a verifier; every other response went to the service
    assert _verified(verifier_server.url) - verified_before == sum(s["format_ok"] for s in samples2)
    before2 = json.loads((it2 / "eval_before.json").read_text())
    after1 = json.loads((it1 / "eval_after.json").read_text())
    assert before2["reused_from"] == str(it1)
    assert before2["mean_accuracy"] == after1["mean_accuracy"] == s2["eval_before"]

    again = CliRunner().invoke(app, ["rs-iteration", "--config", str(cfg_path), "--iteration", "1"])
    assert again.exit_code == 1 and "completed iteration 1" in again.output


def _filter(root, out, *extra):
    return subprocess.run(
        [HYBRIDRL, "filter-prompts", "--model", str(root / "policy"), "--data",
         str(root / "cold.parquet"), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_filter_prompts_keeps_the_moderate_ones_through_the_verifier_api(
    puzzle_policy, verifier_server, tmp_path
):
    """RL prompt filtering (the report's moderate-difficulty filter) on a policy that guesses
    the letter: 4 samples per prompt through the verifier service, in chunks of 5 prompts."""
    before = _verified(verifier_server.url)
    common = ["-k", "4", "--batch", "5", "--max-new-tokens", "12", "--seed", "3"]
    url = ["--verifier-url", verifier_server.url]
    moderate = _filter(puzzle_policy, tmp_path / "kept.parquet", *common, *url)
    assert moderate.returncode == 0, moderate.stdout[-2000:] + moderate.stderr[-2000:]
    # every well-formed sample scored by the API (a broken one gets the format penalty without it)
    formed = re.search(r"well-formed (\d+)/48", moderate.stdout)
    assert formed and _verified(verifier_server.url) - before == int(formed[1]) > 0
    kept = read_records(tmp_path / "kept.parquet")
    assert 0 < len(kept) < 12  # a random letter: some prompts got no right answer in 4
    assert f"{'puzzle':<16} kept {len(kept):>5}/12" in moderate.stdout
    cold = read_records(puzzle_policy / "cold.parquet")
    assert all(r in cold for r in kept)
    # the bounds are the filter: [0, 1] keeps every prompt that got a scored sample
    everything = _filter(
        puzzle_policy, tmp_path / "all.parquet", *common, *url, "--low", "0", "--high", "1"
    )
    assert everything.returncode == 0, everything.stderr[-2000:]
    assert len(read_records(tmp_path / "all.parquet")) == 12
    # nothing in bounds: a clear error, no output file
    none = _filter(puzzle_policy, tmp_path / "none.parquet", *common, *url, "--low", "0.99")
    assert none.returncode == 1 and "widen --low/--high" in none.stderr
    assert not (tmp_path / "none.parquet").exists()
