"""Prompt records: the row layout every dataset of this project uses, and its parquet/JSONL I/O.

The layout is verl's (``data_source``, ``prompt``, ``images``, ``videos``, ``ability``,
``reward_model``, ``extra_info``), so verl datasets load here and ours load in verl. Images are
``{"bytes": <PNG>, "path": None}`` structs like Hugging Face datasets' ``Image`` feature; a
video is ``{"frames": [<PNG>, ...], "fps": float}``.

Parquet needs one type per column, yet ground truths differ per verifier, so
``reward_model.ground_truth`` is stored there as a JSON string and decoded on read (the file's
schema metadata says so). In JSONL it is stored as plain JSON and binary fields as base64.
"""

from __future__ import annotations

import base64
import builtins
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Parquet schema metadata: our files JSON-encode every ground truth; files without this key
# (verl's) hold plain strings, of which only JSON objects/arrays are decoded.
GT_ENCODING_KEY = b"hybridrl.ground_truth_encoding"
RECORD_COLUMNS = (
    "data_source",
    "prompt",
    "images",
    "videos",
    "ability",
    "reward_model",
    "extra_info",
)


class RecordFileError(ValueError):
    """A records file that cannot be read: names the file, and the row and field when known."""


class Message(BaseModel):
    """One chat message; ``<image>``/``<video>`` placeholders mark where media go."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str


def _decode_binary(value: Any) -> Any:
    # JSONL carries bytes as base64 text; bytes objects pass through.
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as e:
            raise ValueError("expected base64 text for binary data") from e
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


class ImageRef(BaseModel):
    """An image as PNG/JPEG bytes or a file path (at least one of them)."""

    model_config = ConfigDict(extra="ignore")

    # the field is named like HF datasets' Image feature; `builtins.bytes` avoids the shadowing
    bytes: builtins.bytes | None = None
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return {"bytes": bytes(value), "path": None}
        if isinstance(value, str | Path):
            return {"bytes": None, "path": str(value)}
        if _is_pil_image(value):
            return {"bytes": encode_png(value), "path": None}
        if isinstance(value, dict) and value.get("bytes") is not None:
            return {**value, "bytes": _decode_binary(value["bytes"])}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ImageRef:
        if self.bytes is None and not self.path:
            raise ValueError("an image needs 'bytes' or 'path'")
        return self


class VideoRef(BaseModel):
    """A video as a list of frames (image bytes or paths) sampled at ``fps`` frames per second."""

    model_config = ConfigDict(extra="ignore")

    frames: list[ImageRef] = Field(..., min_length=1)
    fps: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):  # a bare frame list: 1 FPS
            return {"frames": list(value), "fps": 1.0}
        return value


class RewardSpec(BaseModel):
    """How a prompt is scored: a verifier (``rule``) or the pairwise reward model (``model``)."""

    model_config = ConfigDict(extra="ignore")

    style: Literal["rule", "model"]
    ground_truth: Any = None

    @field_validator("ground_truth", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return decode_ground_truth(value, strict=False)


class ExtraInfo(BaseModel):
    """Per-record bookkeeping; unknown keys are kept (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")

    index: int = 0
    split: str = "train"
    verifier: str | None = None
    reference_response: str | None = None
    task: str | None = None
    difficulty: str | None = None


class PromptRecord(BaseModel):
    """One RL/SFT prompt in verl's column layout."""

    model_config = ConfigDict(extra="forbid")

    data_source: str = Field(..., min_length=1)
    prompt: list[Message] = Field(..., min_length=1)
    images: list[ImageRef] = Field(default_factory=list)
    videos: list[VideoRef] = Field(default_factory=list)
    ability: str = ""
    reward_model: RewardSpec
    extra_info: ExtraInfo = Field(default_factory=ExtraInfo)

    @field_validator("images", "videos", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("extra_info", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _placeholders_match(self) -> PromptRecord:
        text = "".join(m.content for m in self.prompt)
        for tag, media in (("<image>", self.images), ("<video>", self.videos)):
            if text.count(tag) != len(media):
                raise ValueError(
                    f"prompt has {text.count(tag)} {tag} placeholder(s) "
                    f"but the record has {len(media)} {tag[1:-1]}(s)"
                )
        return self

    @property
    def ground_truth(self) -> Any:
        return self.reward_model.ground_truth

    def user_text(self) -> str:
        """The text of the last user message."""
        return next(m.content for m in reversed(self.prompt) if m.role == "user")


# --------------------------------------------------------------------------- ground truth


def encode_ground_truth(value: Any) -> str:
    """Ground truth as the JSON string stored in parquet (keys sorted: stable bytes)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def decode_ground_truth(value: Any, *, strict: bool) -> Any:
    """Decode a stored ground truth.

    ``strict`` (our own parquet files): every string is JSON. Otherwise (verl files, JSONL,
    Python objects) only a string holding a JSON object or array is decoded, so verl's plain
    answers such as ``"42"`` stay strings.
    """
    if not isinstance(value, str):
        return value
    if strict:
        return json.loads(value)
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            return value
        if isinstance(decoded, dict | list):
            return decoded
    return value


# --------------------------------------------------------------------------- media helpers


def _is_pil_image(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(value, Image.Image)


def encode_png(image: Any) -> bytes:
    """PNG bytes of a PIL image (no timestamps in the file, so bytes are reproducible)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def load_image(ref: Any, *, base_dir: str | Path | None = None) -> Any:
    """A PIL RGB image from bytes, a path, an ``{"bytes", "path"}`` dict, an `ImageRef` or an image.

    Relative paths resolve against ``base_dir`` (the records file's folder) when given.
    """
    from PIL import Image

    if _is_pil_image(ref):
        return ref.convert("RGB")
    img = ref if isinstance(ref, ImageRef) else ImageRef.model_validate(ref)
    if img.bytes is not None:
        return Image.open(io.BytesIO(img.bytes)).convert("RGB")
    path = Path(img.path or "")
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as im:
        return im.convert("RGB")


def load_video(ref: Any, *, base_dir: str | Path | None = None) -> tuple[list[Any], float]:
    """The frames (PIL RGB images) and fps of a video given as a `VideoRef`, dict or frame list."""
    vid = ref if isinstance(ref, VideoRef) else VideoRef.model_validate(ref)
    return [load_image(f, base_dir=base_dir) for f in vid.frames], vid.fps


# --------------------------------------------------------------------------- rows


def _frame_bytes(frame: ImageRef, base_dir: Path | None) -> bytes:
    if frame.bytes is not None:
        return frame.bytes
    # parquet stores frames as bytes: embed a frame given by path
    path = Path(frame.path or "")
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path.read_bytes()


def record_to_row(record: PromptRecord, *, for_parquet: bool) -> dict[str, Any]:
    """A plain dict row; in parquet form the ground truth is a JSON string."""
    gt = record.reward_model.ground_truth
    extra = record.extra_info.model_dump()
    return {
        "data_source": record.data_source,
        "prompt": [m.model_dump() for m in record.prompt],
        "images": [{"bytes": i.bytes, "path": i.path} for i in record.images],
        # parquet: frames as a bytes list; JSONL: as image structs, since a bare string there
        # would read back as a path
        "videos": [
            {
                "frames": [
                    _frame_bytes(f, None) if for_parquet else {"bytes": f.bytes, "path": f.path}
                    for f in v.frames
                ],
                "fps": float(v.fps),
            }
            for v in record.videos
        ],
        "ability": record.ability,
        "reward_model": {
            "style": record.reward_model.style,
            "ground_truth": encode_ground_truth(gt) if for_parquet else gt,
        },
        "extra_info": extra,
    }


def row_to_record(row: dict[str, Any], *, strict_ground_truth: bool = False) -> PromptRecord:
    """Validate a row (a dict from parquet, JSONL or verl) into a `PromptRecord`.

    Unknown top-level columns move into ``extra_info`` under their own name (unless that key is
    taken there); ``None`` values of unknown ``extra_info`` keys are dropped, since parquet
    fills keys that other rows have with nulls.
    """
    row = dict(row)
    extra = row.get("extra_info")
    extra = dict(extra) if isinstance(extra, dict) else extra
    if isinstance(extra, dict):
        known = set(ExtraInfo.model_fields)
        extra = {k: v for k, v in extra.items() if v is not None or k in known}
    for key in [k for k in row if k not in RECORD_COLUMNS]:
        value = row.pop(key)
        if isinstance(extra, dict):
            extra.setdefault(key, value)
        elif extra is None:
            extra = {key: value}
    if extra is not None:
        row["extra_info"] = extra
    rm = row.get("reward_model")
    if strict_ground_truth and isinstance(rm, dict) and isinstance(rm.get("ground_truth"), str):
        try:
            rm = {**rm, "ground_truth": json.loads(rm["ground_truth"])}
        except ValueError as e:
            raise ValueError(f"reward_model.ground_truth: not valid JSON ({e})") from None
        row["reward_model"] = rm
    return PromptRecord.model_validate(row)


# --------------------------------------------------------------------------- files


def _parquet_schema() -> Any:
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return {
        "data_source": pa.string(),
        "prompt": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
        "images": pa.list_(image),
        "videos": pa.list_(pa.struct([("frames", pa.list_(pa.binary())), ("fps", pa.float64())])),
        "ability": pa.string(),
        "reward_model": pa.struct([("style", pa.string()), ("ground_truth", pa.string())]),
    }


def write_records(records: Iterable[PromptRecord], path: str | Path) -> Path:
    """Write records to ``path``: parquet (``.parquet``) or JSON lines (``.jsonl``).

    Output bytes depend only on the records, so equal records give identical files.
    """
    path = Path(path)
    records = list(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for rec in records:
                f.write(
                    json.dumps(_jsonable(record_to_row(rec, for_parquet=False)), sort_keys=True)
                )
                f.write("\n")
        return path
    if suffix != ".parquet":
        raise RecordFileError(f"{path}: unknown records format {suffix!r}; use .parquet or .jsonl")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [record_to_row(r, for_parquet=True) for r in records]
    types = _parquet_schema()
    columns: dict[str, Any] = {}
    for name in RECORD_COLUMNS:
        values = [row[name] for row in rows]
        try:
            columns[name] = pa.array(values, type=types.get(name))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise RecordFileError(
                f"{path}: column {name!r} cannot be stored in parquet ({e}); every row needs "
                "the same type per key — store varying values as JSON strings, or write .jsonl"
            ) from None
    table = pa.table(columns).replace_schema_metadata({GT_ENCODING_KEY: b"json"})
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _iter_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    if not path.is_file():
        raise RecordFileError(f"{path}: no such records file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise RecordFileError(f"{path}: line {lineno}: not valid JSON ({e})") from None
                if not isinstance(row, dict):
                    raise RecordFileError(f"{path}: line {lineno}: expected a JSON object")
                rows.append(row)
        return rows, False
    if suffix != ".parquet":
        raise RecordFileError(f"{path}: unknown records format {suffix!r}; use .parquet or .jsonl")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise RecordFileError(f"{path}: not a readable parquet file ({e})") from None
    strict = (table.schema.metadata or {}).get(GT_ENCODING_KEY) == b"json"
    return table.to_pylist(), strict


def read_records(path: str | Path) -> list[PromptRecord]:
    """Read and validate every record of a parquet or JSONL file.

    Errors name the file, the row (0-based) and the field, e.g.
    ``train.parquet: row 3: field reward_model.style: Input should be 'rule' or 'model'``.
    """
    path = Path(path)
    rows, strict = _iter_rows(path)
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(row_to_record(row, strict_ground_truth=strict))
        except ValidationError as e:
            raise RecordFileError(f"{path}: row {i}: {_describe(e)}") from None
        except ValueError as e:
            raise RecordFileError(f"{path}: row {i}: {e}") from None
    return out


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"field {loc}: {err['msg']}" if loc else err["msg"])
    more = e.error_count() - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def records_equal(a: Sequence[PromptRecord], b: Sequence[PromptRecord]) -> bool:
    """Whether two record lists hold the same data."""
    return [r.model_dump() for r in a] == [r.model_dump() for r in b]
