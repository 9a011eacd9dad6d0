"""Prompt data for PPO: the records, a resumable sampler, and the prompt ledger.

The sampler is a pure function of (seed, position): position ``k`` of the stream is element
``k mod N`` of the permutation of epoch ``k div N``. So the checkpoint stores one integer and a
resumed run draws exactly the prompts the interrupted one would have drawn.

The ledger records which prompt indices each iteration consumed — in Redis when a URL is given
(``HYBRIDRL_REDIS_URL`` or ``trainer.ledger_redis_url``), else in SQLite inside the run dir. A
resume rolls back the entries of iterations after the checkpoint, which are then redone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import torch

from hybridrl.records import PromptRecord, read_records


def load_prompts(path: str | Path, tasks: Sequence[str] = ()) -> list[PromptRecord]:
    """Records of ``path``, optionally only those whose ``extra_info.task`` is in ``tasks``."""
    records = read_records(path)
    if tasks:
        keep = set(tasks)
        records = [r for r in records if (r.extra_info.task or r.data_source) in keep]
        if not records:
            raise ValueError(f"{path}: no records of tasks {sorted(keep)}")
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def task_of(record: PromptRecord) -> str:
    return record.extra_info.task or record.data_source


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    if not shuffle:
        return list(range(n))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


def draw(n: int, seed: int, position: int, count: int, shuffle: bool = True) -> list[int]:
    """Dataset indices at stream positions ``[position, position + count)``."""
    out: list[int] = []
    cache: dict[int, list[int]] = {}
    for k in range(position, position + count):
        epoch = k // n
        if epoch not in cache:
            cache[epoch] = epoch_order(n, seed, epoch, shuffle)
        out.append(cache[epoch][k % n])
    return out


class PromptLedger:
    """Which prompt indices each iteration consumed, with rollback on resume."""

    def record(self, iteration: int, position: int, indices: Sequence[int]) -> None: ...

    def rollback_after(self, iteration: int) -> int:
        """Drop entries of iterations > ``iteration``; returns how many were dropped."""
        ...

    def entries(self) -> list[tuple[int, int, list[int]]]:
        """(iteration, stream position, indices), ordered by iteration."""
        ...

    def close(self) -> None: ...


class SqliteLedger(PromptLedger):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS consumed (iteration INTEGER PRIMARY KEY, "
            "position INTEGER NOT NULL, indices TEXT NOT NULL)"
        )
        self.db.commit()

    def record(self, iteration: int, position: int, indices: Sequence[int]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO consumed VALUES (?, ?, ?)",
            (iteration, position, json.dumps(list(indices))),
        )
        self.db.commit()

    def rollback_after(self, iteration: int) -> int:
        cur = self.db.execute("DELETE FROM consumed WHERE iteration > ?", (iteration,))
        self.db.commit()
        return cur.rowcount

    def entries(self) -> list[tuple[int, int, list[int]]]:
        rows = self.db.execute("SELECT iteration, position, indices FROM consumed ORDER BY 1")
        return [(i, p, json.loads(x)) for i, p, x in rows]

    def close(self) -> None:
        self.db.close()


class RedisLedger(PromptLedger):
    """A hash ``hybridrl:ledger:<run>``: field = iteration, value = JSON {position, indices}."""

    def __init__(self, url: str, run: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.key = f"hybridrl:ledger:{run}"

    def record(self, iteration: int, position: int, indices: Sequence[int]) -> None:
        value = json.dumps({"position": position, "indices": list(indices)})
        self.client.hset(self.key, str(iteration), value)

    def rollback_after(self, iteration: int) -> int:
        stale = [f for f in self.client.hkeys(self.key) if int(f) > iteration]
        return self.client.hdel(self.key, *stale) if stale else 0

    def entries(self) -> list[tuple[int, int, list[int]]]:
        raw = self.client.hgetall(self.key)
        out = []
        for field, value in raw.items():
            v = json.loads(value)
            out.append((int(field), int(v["position"]), list(v["indices"])))
        return sorted(out)

    def close(self) -> None:
        self.client.close()


def open_ledger(run_dir: str | Path, run_name: str, redis_url: str | None) -> PromptLedger:
    if redis_url:
        return RedisLedger(redis_url, run_name)
    return SqliteLedger(Path(run_dir) / "ledger.sqlite")
