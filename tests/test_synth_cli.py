"""``hybridrl data synth``: files, identical bytes for a seed, disjoint splits, exit code 2 on bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hybridrl.cli import app
from hybridrl.records import read_records

runner = CliRunner()


def _synth(*args: str):
    return runner.invoke(app, ["data", "synth", *args])


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_parquet_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "7"), (b, "7"), (c, "8")):
        r = _synth("--out", str(out), "--n", "24", "--seed", seed, "--jsonl")
        assert r.exit_code == 0, r.output
    assert _sha(a / "train.parquet") == _sha(b / "train.parquet")
    assert _sha(a / "train.jsonl") == _sha(b / "train.jsonl")
    assert _sha(a / "train.parquet") != _sha(c / "train.parquet")
    recs = read_records(a / "train.parquet")
    assert len(recs) == 24 and len({r.extra_info.task for r in recs}) == 8
    assert "wrote 24 records" in r.output
    previews = sorted(p.name for p in (a / "previews").iterdir())
    assert "grounding_00001_0.png" in previews and "grounding_00001.txt" in previews


def test_test_split_is_disjoint_from_train(tmp_path):
    for split in ("train", "test"):
        r = _synth(
            "--out",
            str(tmp_path),
            "--n",
            "60",
            "--split",
            split,
            "--tasks",
            "math,counting",
            "--difficulty",
            "hard",
            "--no-previews",
        )
        assert r.exit_code == 0, r.output
    train = read_records(tmp_path / "train.parquet")
    test = read_records(tmp_path / "test.parquet")
    assert {r.extra_info.task for r in test} == {"math", "counting"}
    assert not {r.extra_info.content_hash for r in train} & {
        r.extra_info.content_hash for r in test
    }
    assert not {r.images[0].bytes for r in train} & {r.images[0].bytes for r in test}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "math,sudoku"], "unknown task(s) sudoku; known tasks: math"),
        (["--n", "0"], "--n must be a positive integer"),
        (["--n", "-3"], "--n must be a positive integer"),
        (["--split", "val"], "--split must be one of train, test"),
        (["--difficulty", "medium"], "--difficulty must be one of easy, hard"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, args, message):
    base = {"--out": str(tmp_path / "o"), "--n": "4"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    r = _synth(*[x for kv in base.items() for x in kv])
    assert r.exit_code == 2
    assert message in r.output
    assert not (tmp_path / "o").exists()


def test_installed_entry_point(tmp_path):
    exe = [sys.executable, "-m", "hybridrl.cli"]
    ok = subprocess.run(
        [
            *exe,
            "data",
            "synth",
            "--out",
            str(tmp_path),
            "--n",
            "3",
            "--tasks",
            "temporal",
            "--no-previews",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    (rec, *_) = read_records(tmp_path / "train.parquet")
    assert rec.videos[0].fps == 1.0 and rec.user_text().startswith("<video>")
    bad = subprocess.run(
        [*exe, "data", "synth", "--out", str(tmp_path), "--n", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--n must be a positive integer" in bad.stderr
