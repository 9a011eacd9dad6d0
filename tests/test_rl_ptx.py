"""PPO-ptx's record stream (rl/ptx.py): shares, determinism, length filter, label masking."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from hybridrl.records import write_records
from rl.config import PtxConfig
from rl.ptx import PtxSource
from synth.registry import generate


@pytest.fixture(scope="module")
def processor():
    import vlm

    return vlm.create("test")[1]


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ptx") / "sft.parquet"
    write_records(generate(["math", "instruction", "counting"], 24, seed=5), path)
    return path


def _targets(inputs: dict[str, torch.Tensor]) -> list[list[int]]:
    labels = inputs["labels"]
    return [row[row != -100].tolist() for row in labels]


def test_ranks_split_each_update_and_a_resumed_run_reads_the_same(processor, sft_file):
    cfg = PtxConfig(data=[str(sft_file)], coef=0.1, batch_size=6)
    one = PtxSource(cfg, processor, seed=3, rank=0, world=1)
    assert len(one) == 24 and one.dropped == 0
    ranks = [PtxSource(cfg, processor, seed=3, rank=r, world=2) for r in range(2)]
    for update in (0, 1, 5):  # update 5 wraps into the second epoch of 24 records
        whole = sorted(_targets(one.batch(update)))
        shares = [_targets(s.batch(update)) for s in ranks]
        assert [len(s) for s in shares] == [3, 3]
        assert sorted(shares[0] + shares[1]) == whole
    # a fresh source (a resumed run) reads the same records for the same update
    again = PtxSource(cfg, processor, seed=3, rank=0, world=1)
    assert _targets(again.batch(1)) == _targets(one.batch(1))
    assert sorted(_targets(one.batch(0))) != sorted(_targets(one.batch(1)))
    other_seed = PtxSource(cfg, processor, seed=4, rank=0, world=1)
    assert [_targets(other_seed.batch(u)) for u in range(4)] != [
        _targets(one.batch(u)) for u in range(4)
    ]


def test_labels_cover_exactly_the_reference_response(processor, sft_file):
    from hybridrl.records import read_records
    from pretrain.data import response_of

    cfg = PtxConfig(data=[str(sft_file)], coef=0.1, batch_size=24)
    inputs = PtxSource(cfg, processor, seed=0, rank=0, world=1).batch(0)
    responses = {tuple(processor.encode_response(response_of(r))) for r in read_records(sft_file)}
    targets = _targets(inputs)
    assert len(targets) == 24
    assert all(tuple(t) in responses for t in targets)


def test_tasks_and_length_filters(processor, sft_file):
    only = PtxSource(
        PtxConfig(data=[str(sft_file)], coef=0.1, tasks=["math"]), processor,
        seed=0, rank=0, world=1,
    )  # fmt: skip
    assert 0 < len(only) < 24
    lengths = []
    full = PtxSource(PtxConfig(data=[str(sft_file)], coef=0.1), processor, seed=0, rank=0, world=1)
    for u in range(24 // 16 + 1):
        lengths += full.batch(u)["attention_mask"].sum(-1).tolist()
    cap = sorted(lengths)[len(lengths) // 2]
    short = PtxSource(
        PtxConfig(data=[str(sft_file)], coef=0.1, max_tokens=cap), processor,
        seed=0, rank=0, world=1,
    )  # fmt: skip
    assert short.dropped > 0 and len(short) + short.dropped == 24
    for u in range(3):
        assert int(short.batch(u)["attention_mask"].sum(-1).max()) <= cap
    with pytest.raises(ValueError, match="no record fits ptx.max_tokens=16"):
        PtxSource(
            PtxConfig(data=[str(sft_file)], coef=0.1, max_tokens=16), processor,
            seed=0, rank=0, world=1,
        )  # fmt: skip


def test_bad_ptx_config_is_named(processor, sft_file):
    with pytest.raises(ValidationError, match="ptx.coef > 0 needs ptx.data"):
        PtxConfig(coef=0.1)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        PtxConfig(data=[str(sft_file)], coef=-1)
    with pytest.raises(ValueError, match="below the actor's 4 ranks"):
        PtxSource(PtxConfig(data=[str(sft_file)], coef=0.1, batch_size=2), processor,
                  seed=0, rank=0, world=4)  # fmt: skip
    with pytest.raises(ValueError, match="no records of tasks"):
        PtxSource(PtxConfig(data=[str(sft_file)], coef=0.1, tasks=["nope"]), processor,
                  seed=0, rank=0, world=1)  # fmt: skip
