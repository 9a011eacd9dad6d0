"""The trainer end to end on the "test" preset: freeze policies, stage-2 continuation, loss
masking, resume after SIGKILL, two ranks, the eval and fit commands."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import synth
import vlm
from hybridrl.cli import app
from hybridrl.records import write_records
from pretrain.checkpoint import DS_DIR, DS_TAG
from pretrain.config import PretrainConfig, TrainConfig
from pretrain.data import Example, ListSource, SynthMixSource
from pretrain.distributed import launch
from pretrain.losses import IGNORE_INDEX
from pretrain.stages import resolve_stage, run_stage
from pretrain.trainer import Trainer, prepare_batch, train

REPO = Path(__file__).resolve().parents[1]
HYBRIDRL = str(Path(sys.executable).parent / "hybridrl")
TASKS = ["grounding", "counting", "math", "puzzle"]


def _stage(**kw):
    base = {
        "global_batch": 4,
        "micro_batch": 4,
        "seq_len": 512,
        "threads": 1,
        "log_every": 1,
        "prefetch": True,
        "mix": {"caption": 1.0, "grounding": 1.0, "sft/puzzle": 1.0},
    }
    return {**base, **kw}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Stages 0, 1, 2 of a three-step-per-stage "test"-preset profile, run in this process."""
    root = tmp_path_factory.mktemp("pre")
    cfg = PretrainConfig.model_validate(
        {
            "run_dir": str(root),
            "model": "test",
            "rope": {"theta": 10.0, "mrope_section": [2, 7, 7]},
            "stage0": _stage(
                name="s0",
                seed=5,
                trainable="adapter",
                steps=3,
                optim={"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1},
            ),
            "stage1": _stage(
                name="s1",
                seed=6,
                trainable="all",
                steps=3,
                optim={"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 1},
            ),
            "stage2": _stage(
                name="s2",
                seed=7,
                trainable="all",
                steps=3,
                seq_len=2048,
                continue_optimizer=True,
                optim={"lr": 1e-3, "min_lr": 1e-3, "schedule": "constant"},
                mix={"sft/temporal": 1.0, "grounding": 1.0},
            ),
        }
    )
    for n in (0, 1, 2):
        run_stage(cfg, n)
    return cfg, root


def _weights(path):
    model, _ = vlm.load(path, dtype=torch.float32)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _metrics(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_stage0_trains_the_adapter_only(pretrained):
    cfg, root = pretrained
    fresh, _ = vlm.create("test", seed=cfg.stage0.seed)
    before = {k: v.detach() for k, v in fresh.state_dict().items()}
    after = _weights(root / "stage0" / "final")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapter = {k for k in before if ".visual.merger." in k}
    assert changed == adapter


def test_rope_settings_reach_every_stage(pretrained):
    _, root = pretrained
    for n in (0, 1, 2):
        model, _ = vlm.load(root / f"stage{n}" / "final")
        rope = model.config.text_config.rope_parameters
        assert (rope["rope_theta"], rope["mrope_section"]) == (10.0, [2, 7, 7])


def test_stage1_trains_vision_and_language(pretrained):
    _, root = pretrained
    s0, s1 = _weights(root / "stage0" / "final"), _weights(root / "stage1" / "final")
    changed = {k for k in s0 if not torch.equal(s0[k], s1[k])}
    assert any(".visual.blocks." in k for k in changed)
    assert any(".language_model.layers." in k for k in changed)
    assert any(".visual.merger." in k for k in changed)


def test_schedules_as_run(pretrained):
    cfg, root = pretrained
    s1 = [r["lr"] for r in _metrics(root / "stage1")]
    assert s1 == pytest.approx([1e-2, 1e-2, 1e-3])  # warmup 1 step, then cosine to min
    s2 = [r["lr"] for r in _metrics(root / "stage2")]
    assert s2 == pytest.approx([1e-3] * 3)  # constant, no warmup


def _exp_avgs(state):
    return [state[i]["exp_avg"] for i in sorted(state)]


def test_stage2_starts_from_stage1_optimizer_state(pretrained):
    cfg, root = pretrained
    start, stage2 = resolve_stage(cfg, 2)
    assert stage2.init_optimizer_from == str(root / "stage1" / "final")
    source = SynthMixSource(stage2.mix, seed=stage2.seed)
    trainer = Trainer(stage2, root / "probe", start, source)
    trainer.setup()
    loaded = _exp_avgs(trainer.engine.optimizer.optimizer.state_dict()["state"])
    saved = torch.load(
        root / "stage1" / "final" / DS_DIR / DS_TAG / "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        weights_only=False,
    )["optimizer_state_dict"]["base_optimizer_state"]["state"]
    assert len(loaded) == len(_exp_avgs(saved)) > 0
    for a, b in zip(loaded, _exp_avgs(saved), strict=True):
        assert torch.equal(a, b)
    assert any(float(a.abs().sum()) > 0 for a in loaded)
    # a stage without continuation starts with empty moments
    fresh = Trainer(
        stage2.model_copy(update={"init_optimizer_from": None}), root / "p2", start, source
    )
    fresh.setup()
    assert fresh.engine.optimizer.optimizer.state_dict()["state"] == {}


def test_continuation_refuses_a_different_parameter_set(pretrained):
    cfg, root = pretrained
    _, stage2 = resolve_stage(cfg, 2)
    bad = stage2.model_copy(update={"trainable": "no_vision"})
    trainer = Trainer(bad, root / "probe3", root / "stage1" / "final", SynthMixSource(bad.mix))
    with pytest.raises(ValueError, match="optimizer states only carry over"):
        trainer.setup()


def test_vision_lr_scale_steps_the_vision_tower_at_its_own_lr(tmp_path):
    cfg = TrainConfig.model_validate(
        {k: v for k, v in _stage().items() if k != "mix"}
        | dict(
            name="vis",
            seed=4,
            trainable="all",
            steps=2,
            optim={"lr": 1e-2, "min_lr": 1e-2, "schedule": "constant", "vision_lr_scale": 0.1},
        )
    )
    trainer = launch(
        1, 1, Trainer, cfg, tmp_path / "vis", "test", SynthMixSource({"caption": 1.0}, seed=4)
    )
    trainer.setup()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    lr, _, _ = trainer._train_step(trainer._prepare(0))
    groups = trainer.engine.optimizer.param_groups
    assert lr == pytest.approx(1e-2)
    assert sorted({round(g["lr"] / lr, 6) for g in groups}) == [0.1, 1.0]
    assert all(g["lr"] == pytest.approx(1e-2 * g["lr_scale"]) for g in groups)
    # the first Adam step moves every weight by about lr: 1e-3 in the ViT, 1e-2 in the LM
    moved = {
        n: (p.detach() - before[n]).abs().max().item()
        for n, p in trainer.model.named_parameters()
        if n.endswith("weight") and p.ndim >= 2
    }
    vit = [m for n, m in moved.items() if ".visual." in n]
    lm = [m for n, m in moved.items() if ".language_model." in n]
    assert max(vit) < 2e-3 < 5e-3 < min(lm)


def test_image_gap_swaps_visuals_within_a_task_only():
    from pretrain.evaluate import _swapped_visuals

    records = synth.generate(["grounding"], 3, seed=0) + synth.generate(["counting"], 2, seed=1)
    text_only = synth.generate(["puzzle"], 2, seed=0)
    records += [r.model_copy(update={"images": []}) for r in text_only]  # never swapped
    records += synth.generate(["spot_difference"], 1, seed=0)  # alone: nothing to swap with
    donors = _swapped_visuals(records)
    assert sorted(donors) == [0, 1, 2, 3, 4]
    for i, donor in donors.items():
        assert donor is not records[i]
        assert donor.extra_info.task == records[i].extra_info.task
    assert len({id(d) for d in donors.values()}) == len(donors)  # a rotation: each gives once


def test_sft_labels_are_the_target_tokens_only():
    _, processor = vlm.create("test")
    records = synth.generate(["grounding", "math"], 2, seed=0)
    examples = [
        Example(
            messages=[m.model_dump() for m in r.prompt],
            target=r.extra_info.reference_response,
            images=[i.bytes for i in r.images],
        )
        for r in records
    ]
    batch = prepare_batch(
        ListSource(examples), processor, 0, 2, world=1, seq_len=4096, micro_batch=2
    ).shards[0][0]
    ids, labels, mask = (batch.inputs[k] for k in ("input_ids", "labels", "attention_mask"))
    targets = {processor.encode_response(e.target).__len__() for e in examples}
    for row in range(2):
        n = int(mask[row].sum())
        target = [len(processor.encode_response(e.target)) for e in examples]
        t = next(k for k in target if torch.equal(labels[row, n - k : n], ids[row, n - k : n]))
        expect = torch.full_like(ids[row], IGNORE_INDEX)
        expect[n - t : n] = ids[row, n - t : n]
        assert torch.equal(labels[row], expect)  # -100 on prompt, image and pad tokens
        assert (labels[row][ids[row] == processor.image_token_id] == IGNORE_INDEX).all()
        assert (ids[row] == processor.image_token_id).sum() > 0
        assert (labels[row][mask[row] == 0] == IGNORE_INDEX).all()
    assert len(targets) == 2 and int((mask == 0).sum()) > 0  # two lengths: one row padded


def _sft_setup(tmp_path, steps=14, **train):
    data = tmp_path / "train.parquet"
    write_records(synth.generate(TASKS, 24, seed=1), data)
    cfg = {
        "model": "test",
        "data": [str(data)],
        "run_dir": str(tmp_path / "run"),
        "train": {
            "name": "sft",
            "seed": 3,
            "trainable": "no_vision",
            "steps": steps,
            "global_batch": 4,
            "micro_batch": 2,
            "seq_len": 1024,
            "threads": 1,
            "save_every": 2,
            "keep_checkpoints": 2,
            "log_every": 1,
            "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2},
            **train,
        },
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def test_resume_after_sigkill_reaches_the_same_loss(tmp_path):
    path, cfg = _sft_setup(tmp_path)
    run = Path(cfg["run_dir"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [HYBRIDRL, "sft", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while not (run / "step_4" / "trainer_state.json").is_file():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run / "final").exists(), "killed mid-run"
    done = max(r["step"] for r in _metrics(run))
    assert 4 <= done < cfg["train"]["steps"]
    resumed = subprocess.run(
        [HYBRIDRL, "sft", "--config", str(path), "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    steps = [r["step"] for r in _metrics(run)]
    assert steps == list(range(1, cfg["train"]["steps"] + 1)), "no step logged twice or lost"

    # the same run without interruption, in this process
    ref_dir = tmp_path / "ref"
    train(
        "test",
        cfg["data"],
        TrainConfig.model_validate(cfg["train"]),
        ref_dir,
    )
    killed, ref = _metrics(run), _metrics(ref_dir)
    assert [r["loss"] for r in killed] == pytest.approx([r["loss"] for r in ref], rel=1e-5)
    a, b = _weights(run / "final"), _weights(ref_dir / "final")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_two_ranks_match_one(tmp_path):
    data = tmp_path / "d.parquet"
    write_records(synth.generate(TASKS + ["spot_difference"], 20, seed=2), data)
    cfg = TrainConfig(
        name="dp",
        seed=1,
        trainable="all",
        steps=3,
        global_batch=6,
        micro_batch=2,
        threads=1,
        log_every=1,
        optim={"lr": 3e-3, "min_lr": 3e-4},
    )
    one = train("test", str(data), cfg, tmp_path / "one")
    two = train("test", str(data), cfg.model_copy(update={"nproc": 2}), tmp_path / "two")
    m1, m2 = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4)
    assert all(r["imbalance"] >= 1.0 for r in m2)
    parts = sorted(p.name for p in (two / DS_DIR / DS_TAG).glob("zero_pp_rank_*"))
    assert parts == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    w1, w2 = _weights(one), _weights(two)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-3, atol=1e-5)
    assert (tmp_path / "two" / "config.yaml").is_file() and list(
        (tmp_path / "two" / "tb").iterdir()
    )


def test_eval_and_fit_commands(pretrained, tmp_path):
    _, root = pretrained
    data = tmp_path / "test.parquet"
    write_records(synth.generate(["grounding", "caption", "puzzle"], 6, seed=0, split="test"), data)
    runner = CliRunner()
    out = tmp_path / "eval.json"
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(root / "stage2" / "final"),
            "--data",
            str(data),
            "--n",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert {t["task"] for t in report["tasks"]} == {"grounding", "puzzle"}
    assert all(t["n"] == 2 and 0 <= t["accuracy"] <= 1 for t in report["tasks"])
    assert all(isinstance(t["image_gap"], float) for t in report["tasks"])  # 2 images per task
    assert report["skipped"] == {"caption": 2}
    assert "grounding" in res.output and "accuracy" in res.output

    res = runner.invoke(app, ["pretrain", "fit", str(root), "--skip-frac", "0"])
    assert res.exit_code == 0, res.output
    fits = json.loads((root / "scaling_fits.json").read_text())
    assert "caption" in fits["loss_vs_tokens"]
    assert all(isinstance(f["a"], float) for f in fits["loss_vs_tokens"].values())
    assert (root / "scaling.png").stat().st_size > 1000

    res = runner.invoke(app, ["eval", "--model", str(tmp_path), "--data", str(data)])
    assert res.exit_code == 1 and "no config.json" in res.output
    res = runner.invoke(app, ["pretrain", "--stage", "3", "--config", "configs/pretrain_tiny.yaml"])
    assert res.exit_code == 2 and "--stage must be 0, 1 or 2" in res.output
