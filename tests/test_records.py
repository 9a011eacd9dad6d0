"""Prompt records: parquet/JSONL round trips, verl compatibility, and errors that name the place."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hybridrl.records import (
    PromptRecord,
    RecordFileError,
    load_image,
    load_video,
    read_records,
    records_equal,
    write_records,
)
from synth import generate


def _png(colour=(255, 0, 0), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mixed():
    # every task, so parquet must hold rows whose ground truths and extra_info keys differ
    return generate(
        [
            "math",
            "grounding",
            "counting",
            "spot_difference",
            "puzzle",
            "instruction",
            "caption",
            "temporal",
        ],
        24,
        seed=5,
        difficulty="hard",
    )


def test_parquet_and_jsonl_round_trip(tmp_path, mixed):
    for name in ("r.parquet", "r.jsonl"):
        back = read_records(write_records(mixed, tmp_path / name))
        assert records_equal(mixed, back), name
    a = read_records(tmp_path / "r.parquet")
    assert a[0].reward_model.ground_truth == mixed[0].reward_model.ground_truth
    assert isinstance(a[1].reward_model.ground_truth, dict)


def test_parquet_stores_ground_truth_as_json_string_and_bytes_are_stable(tmp_path, mixed):
    p1 = write_records(mixed, tmp_path / "a.parquet")
    p2 = write_records(mixed, tmp_path / "b.parquet")
    assert hashlib.sha256(p1.read_bytes()).digest() == hashlib.sha256(p2.read_bytes()).digest()
    table = pq.read_table(p1)
    assert table.schema.field("reward_model").type.field("ground_truth").type == pa.string()
    raw = table.column("reward_model").to_pylist()[1]["ground_truth"]
    assert json.loads(raw) == mixed[1].reward_model.ground_truth
    assert table.schema.field("images").type.value_type.names == ["bytes", "path"]


def _verl_table(ground_truth: str, **extra_columns) -> pa.Table:
    image = {"bytes": _png(), "path": None}
    row = {
        "data_source": "hiyouga/geometry3k",
        "prompt": [{"role": "user", "content": "<image>Find x."}],
        "images": [image],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"index": 7, "split": "train", "answer": "42", "question": "Find x."},
        **extra_columns,
    }
    return pa.Table.from_pylist([row])


def test_reads_verl_parquet_with_extra_columns(tmp_path):
    path = tmp_path / "verl.parquet"
    pq.write_table(_verl_table("42", source_id=[3]), path)
    (rec,) = read_records(path)
    assert rec.reward_model.ground_truth == "42"  # verl's plain answers stay strings
    assert rec.videos == []
    assert rec.extra_info.index == 7
    assert rec.extra_info.model_extra["answer"] == "42"
    assert rec.extra_info.model_extra["source_id"] == [3]  # unknown column kept in extra_info
    assert load_image(rec.images[0]).getpixel((0, 0)) == (255, 0, 0)
    pq.write_table(_verl_table('{"answer": "\\\\frac{1}{2}"}'), path)
    (rec,) = read_records(path)
    assert rec.reward_model.ground_truth == {"answer": "\\frac{1}{2}"}


def _good_row() -> dict:
    return {
        "data_source": "synth/counting",
        "prompt": [{"role": "user", "content": "How many?"}],
        "ability": "counting",
        "reward_model": {"style": "rule", "ground_truth": {"count": 3}},
        "extra_info": {"index": 0},
    }


def test_jsonl_errors_name_file_row_and_field(tmp_path):
    bad = _good_row()
    bad["reward_model"] = {"style": "judge", "ground_truth": {"count": 3}}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (_good_row(), _good_row(), bad)) + "\n")
    with pytest.raises(RecordFileError) as e:
        read_records(path)
    msg = str(e.value)
    assert str(path) in msg and "row 2" in msg and "reward_model.style" in msg

    path.write_text(json.dumps(_good_row()) + "\n{not json\n")
    with pytest.raises(RecordFileError, match=r"bad.jsonl: line 2: not valid JSON"):
        read_records(path)


def test_parquet_errors_name_row_and_field(tmp_path):
    rows = [_good_row(), _good_row()]
    rows[1] = {**rows[1], "prompt": [{"role": "robot", "content": "hi"}]}
    for r in rows:
        r["reward_model"] = {
            **r["reward_model"],
            "ground_truth": json.dumps(r["reward_model"]["ground_truth"]),
        }
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(RecordFileError, match=r"bad.parquet: row 1: field prompt.0.role"):
        read_records(path)


def test_placeholder_count_must_match_media(tmp_path):
    row = _good_row()
    row["prompt"] = [{"role": "user", "content": "<image><image>How many?"}]
    row["images"] = [_png()]
    path = tmp_path / "p.jsonl"
    write_records([], path)
    path.write_text(json.dumps({**row, "images": [{"bytes": None, "path": "a.png"}]}) + "\n")
    with pytest.raises(
        RecordFileError, match=r"row 0: .*2 <image> placeholder\(s\) but the record has 1 image"
    ):
        read_records(path)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(RecordFileError, match="no such records file"):
        read_records(tmp_path / "none.parquet")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(RecordFileError, match="use .parquet or .jsonl"):
        read_records(tmp_path / "x.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(RecordFileError, match="junk.parquet: not a readable parquet file"):
        read_records(tmp_path / "junk.parquet")


def test_extra_info_type_conflict_is_a_clear_write_error(tmp_path):
    a, b = _good_row(), _good_row()
    a["extra_info"] = {"index": 0, "note": 1}
    b["extra_info"] = {"index": 1, "note": "text"}
    recs = [PromptRecord.model_validate(r) for r in (a, b)]
    with pytest.raises(RecordFileError, match=r"column 'extra_info' cannot be stored in parquet"):
        write_records(recs, tmp_path / "c.parquet")
    assert records_equal(recs, read_records(write_records(recs, tmp_path / "c.jsonl")))


def test_images_load_from_bytes_dicts_paths_and_images(tmp_path):
    png = _png((0, 0, 255))
    (tmp_path / "img.png").write_bytes(png)
    for ref in (
        png,
        {"bytes": png, "path": None},
        str(tmp_path / "img.png"),
        Image.open(io.BytesIO(png)),
    ):
        assert load_image(ref).getpixel((1, 1)) == (0, 0, 255)
    assert load_image({"path": "img.png"}, base_dir=tmp_path).size == (8, 8)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(str(tmp_path / "nope.png"))
    frames, fps = load_video({"frames": [png, png], "fps": 2})
    assert len(frames) == 2 and fps == 2.0
    with pytest.raises(ValueError, match="needs 'bytes' or 'path'"):
        load_image({"bytes": None, "path": None})
