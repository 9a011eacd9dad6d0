"""Process setup and data-parallel launch: DeepSpeed on gloo (CPU) or NCCL, one rank per process.

``launch(nproc, fn, *args)`` runs ``fn(*args)`` on ``nproc`` ranks: in this process when
``nproc`` is 1 (a world of one, so single-process runs take the DeepSpeed path too), else in
spawned processes that join one process group on a free local port.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def setup_process(threads: int | None, nproc: int = 1) -> None:
    """Settings every rank needs before torch or DeepSpeed do work."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # DeepSpeed JIT-builds a small shared-memory op on first start: keep it out of the repo
    os.environ.setdefault(
        "TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "hybridrl" / "torch_extensions")
    )
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // nproc))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    import logging

    # DeepSpeed logs every engine detail at INFO; a run's own log says what matters
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_group(rank: int, world: int, port: int) -> None:
    """Join (or create) the default process group through DeepSpeed's comm layer."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_initialized():
        if dist.get_world_size() != world:
            raise RuntimeError(
                f"a process group of size {dist.get_world_size()} exists; cannot start {world}"
            )
        return
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    deepspeed.init_distributed(
        dist_backend="nccl" if torch.cuda.is_available() else "gloo",
        auto_mpi_discovery=False,
        verbose=False,
    )


def _rank_main(rank: int, world: int, port: int, threads: int | None, fn: Callable, args: tuple):
    setup_process(threads, world)
    init_group(rank, world, port)
    fn(*args)


def launch(nproc: int, threads: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on ``nproc`` data-parallel ranks; returns rank 0's result when in-process."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    if nproc == 1:
        setup_process(threads, 1)
        import torch.distributed as dist

        init_group(0, 1, free_port() if not dist.is_initialized() else 0)
        return fn(*args)
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(
        _rank_main,
        args=(nproc, port, threads, fn, args),
        nprocs=nproc,
        join=True,
        start_method="spawn",
    )
    return None


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (parallelism-aware loading: one rank reads)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (all ranks get the list)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
