"""The worker roles, as plain classes the controller turns into Ray actors.

- `RolloutWorker`: a rollout engine (generate, update_weights).
- `PolicyTrainer` (role "actor"): the policy under DeepSpeed, data parallel over Ray actors
  forming one process group; old logprobs, entropy, the PPO clipped update, weight export.
- `CriticTrainer` (role "critic"): the shared value model under DeepSpeed; values and the
  clipped value update.
- `ReferenceWorker` (role "reference"): the frozen initial policy; reference logprobs.

Workers only compute: the controller decides what, on which rows, and in which order.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rl.batching import RolloutBatch, TokenIds, collate, micro_batches
from rl.config import ActorConfig, CriticConfig, ModelConfig, OptimConfig, PtxConfig
from rl.rollout import RolloutOutput, RolloutPrompt, SamplingParams, make_engine

# one micro-batch plan entry: (rows, loss scale); scale 0 marks a padding step
MicroPlan = list[tuple[list[int], float]]


def setup_process(torch_threads: int) -> None:
    """Per-process settings every worker needs before torch/DeepSpeed do any work."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault(
        "TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "hybridrl" / "torch_extensions")
    )
    torch.set_num_threads(torch_threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class RolloutWorker:
    """One rollout engine in its own process."""

    def __init__(self, engine: str, model_cfg: ModelConfig, micro_batch_size: int, threads: int):
        setup_process(threads)
        self.engine = make_engine(engine, model_cfg, micro_batch_size)

    def generate(
        self, prompts: Sequence[RolloutPrompt], params: SamplingParams, seed: int
    ) -> list[RolloutOutput]:
        return self.engine.generate(prompts, params, seed)

    def update_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.engine.update_weights(state_dict)

    def pid(self) -> int:
        return os.getpid()


class ReferenceWorker:
    """The frozen initial policy."""

    def __init__(self, model_cfg: ModelConfig, threads: int):
        setup_process(threads)
        from rl.modeling import load_policy

        self.model, processor = load_policy(model_cfg)
        self.model.to(_device()).eval()
        self.ids = TokenIds(
            processor.pad_token_id, processor.image_token_id, processor.video_token_id
        )

    @torch.no_grad()
    def logprobs(
        self, batch: RolloutBatch, rows: Sequence[int], micro_batch_size: int, temperature: float
    ) -> torch.Tensor:
        from rl.modeling import policy_forward

        r_len = batch.max_response_len
        out = torch.zeros(len(rows), r_len)
        done = 0
        for mb in micro_batches(rows, micro_batch_size):
            data = _to(collate(batch, mb, self.ids, r_len), _device())
            logp, _ = policy_forward(self.model, data, temperature, with_entropy=False)
            out[done : done + len(mb)] = logp.float().cpu()
            done += len(mb)
        return out

    def pid(self) -> int:
        return os.getpid()


# --------------------------------------------------------------------------- DeepSpeed roles


def deepspeed_config(
    optim: OptimConfig, zero_stage: int, micro_batch_size: int, bf16: bool
) -> dict[str, Any]:
    """DeepSpeed config: the caller owns gradient accumulation (one ``step()`` per update)."""
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": {"stage": zero_stage},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": optim.lr,
                "betas": list(optim.betas),
                "eps": optim.eps,
                "weight_decay": optim.weight_decay,
                "torch_adam": True,  # no compiled CPU/fused kernels needed
            },
        },
        "bf16": {"enabled": bf16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if optim.warmup_updates:
        cfg["scheduler"] = {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": 0.0,
                "warmup_max_lr": optim.lr,
                "warmup_num_steps": optim.warmup_updates,
                "warmup_type": "linear",
            },
        }
    return cfg


class _DeepSpeedRole:
    """Process-group bootstrap and checkpointing shared by the actor and the critic."""

    role = "worker"

    def __init__(self, threads: int):
        setup_process(threads)
        self.engine: Any = None

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's address and a free port, for MASTER_ADDR/MASTER_PORT of the group."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def _init_group(self, rank: int, world: int, addr: str, port: int) -> None:
        import deepspeed

        os.environ.update(
            MASTER_ADDR=addr,
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
        )
        deepspeed.init_distributed(
            dist_backend="nccl" if torch.cuda.is_available() else "gloo",
            auto_mpi_discovery=False,
            verbose=False,
        )
        self.rank, self.world = rank, world

    def _init_engine(self, module: torch.nn.Module, ds_config: dict[str, Any]) -> None:
        import deepspeed

        params = [p for p in module.parameters() if p.requires_grad]
        self.engine, *_ = deepspeed.initialize(
            model=module, model_parameters=params, config=ds_config
        )

    def save_state(self, path: str) -> None:
        """DeepSpeed checkpoint (weights, optimizer, scheduler) of this rank under ``path``."""
        self.engine.save_checkpoint(path, tag="state")

    def load_state(self, path: str) -> None:
        load_path, _ = self.engine.load_checkpoint(
            path, tag="state", load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if load_path is None:
            raise FileNotFoundError(f"no {self.role} DeepSpeed checkpoint under {path}")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def pid(self) -> int:
        return os.getpid()

    def _grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")


class PolicyTrainer(_DeepSpeedRole):
    role = "actor"

    def setup(
        self, model_cfg: ModelConfig, cfg: ActorConfig, rank: int, world: int, addr: str, port: int
    ) -> dict[str, int]:
        from rl.modeling import freeze_vision, load_policy

        self._init_group(rank, world, addr, port)
        self.cfg = cfg
        model, self.processor = load_policy(model_cfg)
        frozen = freeze_vision(model) if model_cfg.freeze_vision else 0
        model.to(_device())
        self.ids = TokenIds(
            self.processor.pad_token_id,
            self.processor.image_token_id,
            self.processor.video_token_id,
        )
        ds = deepspeed_config(
            cfg.optim, cfg.zero_stage, cfg.micro_batch_size, model_cfg.dtype == "bfloat16"
        )
        self._init_engine(model, ds)
        self.ptx = None
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {"trainable": trainable, "frozen": frozen}

    def setup_ptx(self, cfg: PtxConfig, seed: int) -> dict[str, int]:
        """Load the PPO-ptx records (after `setup`): how many are used and how many were too
        long."""
        from rl.ptx import PtxSource

        self.ptx_cfg = cfg
        self.ptx = PtxSource(cfg, self.processor, seed=seed, rank=self.rank, world=self.world)
        return {"records": len(self.ptx), "too_long": self.ptx.dropped}

    @torch.no_grad()
    def logprobs(
        self, batch: RolloutBatch, plan: list[list[int]], temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Old logprobs and entropy of this rank's micro-batches (padding steps included)."""
        from rl.modeling import policy_forward

        self.engine.eval()
        r_len = batch.max_response_len
        rows = [r for mb in plan for r in mb]
        logp, ent = torch.zeros(len(rows), r_len), torch.zeros(len(rows), r_len)
        done = 0
        for mb in plan:
            data = _to(collate(batch, mb, self.ids, r_len), _device())
            lp, en = policy_forward(self.engine, data, temperature, with_entropy=True)
            logp[done : done + len(mb)] = lp.float().cpu()
            ent[done : done + len(mb)] = en.float().cpu()
            done += len(mb)
        return logp, ent

    def update(
        self,
        batch: RolloutBatch,
        tensors: dict[str, torch.Tensor],
        plan: list[MicroPlan],
        temperature: float,
        ptx_update: int | None = None,
    ) -> list[dict[str, float]]:
        """One optimizer step per minibatch in ``plan``; ``tensors`` hold old_logp, advantages,
        mask for every row of the batch (R columns). With PPO-ptx set up, minibatch ``m`` also
        takes the supervised batch of global update ``ptx_update + m``. Returns per-update
        statistics."""
        from rl import core_algos as ca
        from rl.modeling import policy_forward
        from rl.ptx import ptx_loss

        self.engine.train()
        r_len = batch.max_response_len
        stats = []
        for m, minibatch in enumerate(plan):
            acc: dict[str, float] = {}
            tokens = 0.0
            for rows, scale in minibatch:
                data = _to(collate(batch, rows, self.ids, r_len), _device())
                sel = {k: v[rows].to(_device()) for k, v in tensors.items()}
                mask = sel["mask"]
                logp, entropy = policy_forward(
                    self.engine, data, temperature, with_entropy=self.cfg.entropy_coef > 0
                )
                pg_loss, pg = ca.policy_loss(
                    logp,
                    sel["old_logp"],
                    sel["advantages"],
                    mask,
                    clip_eps=self.cfg.clip_eps,
                    clip_eps_high=self.cfg.clip_eps_high,
                    dual_clip=self.cfg.dual_clip,
                    agg=self.cfg.loss_agg,
                )
                loss = pg_loss
                if entropy is not None:
                    loss = loss - self.cfg.entropy_coef * ca.aggregate(
                        entropy, mask, self.cfg.loss_agg
                    )
                self.engine.backward(loss * scale, scale_wrt_gas=False)
                if scale > 0:
                    n = float(mask.sum())
                    tokens += n
                    for k, v in {"pg_loss": pg_loss, **pg}.items():
                        acc[k] = acc.get(k, 0.0) + float(v.detach()) * n
            out = {k: v / max(tokens, 1.0) for k, v in acc.items()}
            if self.ptx is not None and ptx_update is not None:
                nll = ptx_loss(self.engine, _to(self.ptx.batch(ptx_update + m), _device()))
                self.engine.backward(self.ptx_cfg.coef * nll, scale_wrt_gas=False)
                out["ptx_loss"] = float(nll.detach())
            self.engine.step()
            out["grad_norm"] = self._grad_norm()
            stats.append(out)
        return stats

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full CPU weights for the rollout engines (every rank must call under ZeRO-3)."""
        module = self.engine.module
        params = list(module.parameters())
        if self.cfg.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        else:
            sd = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        return sd if self.rank == 0 else None

    def save_pretrained(self, path: str) -> None:
        """The policy in Hugging Face format (+ processor), for users, eval and the rollout."""
        sd = self.state_dict()
        if self.rank == 0:
            self.engine.module.save_pretrained(path, state_dict=sd)
            self.processor.save_pretrained(path)


class CriticTrainer(_DeepSpeedRole):
    role = "critic"

    def setup(
        self, model_cfg: ModelConfig, cfg: CriticConfig, rank: int, world: int, addr: str, port: int
    ) -> dict[str, int]:
        from rl.modeling import ValueModel, freeze_vision, load_policy

        self._init_group(rank, world, addr, port)
        self.cfg = cfg
        policy, processor = load_policy(model_cfg)
        critic = ValueModel.from_policy(policy)
        del policy  # the LM head is not part of the critic
        frozen = freeze_vision(critic.body) if model_cfg.freeze_vision else 0
        critic.to(_device())
        self.ids = TokenIds(
            processor.pad_token_id, processor.image_token_id, processor.video_token_id
        )
        ds = deepspeed_config(
            cfg.optim, cfg.zero_stage, cfg.micro_batch_size, model_cfg.dtype == "bfloat16"
        )
        self._init_engine(critic, ds)
        trainable = sum(p.numel() for p in critic.parameters() if p.requires_grad)
        return {"trainable": trainable, "frozen": frozen}

    @torch.no_grad()
    def values(self, batch: RolloutBatch, plan: list[list[int]]) -> torch.Tensor:
        from rl.modeling import value_forward

        self.engine.eval()
        r_len = batch.max_response_len
        out = torch.zeros(sum(len(mb) for mb in plan), r_len)
        done = 0
        for mb in plan:
            data = _to(collate(batch, mb, self.ids, r_len), _device())
            out[done : done + len(mb)] = value_forward(self.engine, data).float().cpu()
            done += len(mb)
        return out

    def update(
        self, batch: RolloutBatch, tensors: dict[str, torch.Tensor], plan: list[MicroPlan]
    ) -> list[dict[str, float]]:
        """One optimizer step per minibatch; ``tensors`` hold values (old), returns, mask."""
        from rl import core_algos as ca
        from rl.modeling import value_forward

        self.engine.train()
        r_len = batch.max_response_len
        stats = []
        for minibatch in plan:
            acc: dict[str, float] = {}
            tokens = 0.0
            for rows, scale in minibatch:
                data = _to(collate(batch, rows, self.ids, r_len), _device())
                sel = {k: v[rows].to(_device()) for k, v in tensors.items()}
                values = value_forward(self.engine, data)
                vf_loss, vs = ca.value_loss(
                    values,
                    sel["values"],
                    sel["returns"],
                    sel["mask"],
                    clip_range=self.cfg.value_clip,
                    agg="token-mean",
                )
                self.engine.backward(vf_loss * scale, scale_wrt_gas=False)
                if scale > 0:
                    n = float(sel["mask"].sum())
                    tokens += n
                    for k, v in {"vf_loss": vf_loss, **vs}.items():
                        acc[k] = acc.get(k, 0.0) + float(v.detach()) * n
            self.engine.step()
            out = {k: v / max(tokens, 1.0) for k, v in acc.items()}
            out["vf_grad_norm"] = self._grad_norm()
            stats.append(out)
        return stats
