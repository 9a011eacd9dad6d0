"""The typed PPO run config: every knob of a hybrid-PPO run, with the defaults of a small local run.

`configs/paper.yaml` holds the Seed1.5-VL report's values (4,096 rollouts per iteration,
minibatches of 512, 8 gradient updates, 8k context, 16k output); `configs/local.yaml` scales them
down for one 2-core CPU machine. Loaded with `hybridrl.config.load_config` (YAML + dotted
overrides), printed in full at start and saved as ``runs/<name>/config.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    """The policy to start from: a checkpoint directory, or a random preset (tests only)."""

    path: str | None = Field(None, description="Qwen2-VL-family checkpoint dir (the SFT model)")
    preset: str | None = Field(None, description="random init of a vlm preset when no path")
    init_seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "float32"
    freeze_vision: bool = Field(
        True, description="keep the vision encoder fixed in actor and critic"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if not self.path and not self.preset:
            raise ValueError("set model.path (a checkpoint dir) or model.preset (tiny|test)")
        return self


class DataConfig(_Section):
    train: str = Field("data/synth/train.parquet", description="prompt records (parquet/jsonl)")
    test: str | None = Field("data/synth/test.parquet", description="held-out records for eval")
    prompts_per_iteration: int = Field(32, ge=1)
    shuffle: bool = True
    tasks: list[str] = Field(default_factory=list, description="keep only these tasks (empty: all)")
    max_prompt_tokens: int = Field(8192, ge=1, description="longer prompts are dropped at load")


class RolloutConfig(_Section):
    engine: str = Field("transformers", description="rollout engine by name (transformers|vllm)")
    num_engines: int = Field(1, ge=1)
    n: int = Field(4, ge=1, description="responses per prompt")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    micro_batch_size: int = Field(64, ge=1, description="sequences per generate call")
    group_by_length: bool = Field(
        True,
        description="fill each generate call with prompts whose tasks gave responses of like "
        "length in earlier iterations (a call waits on its longest response)",
    )


class OptimConfig(_Section):
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_updates: int = Field(0, ge=0, description="linear LR warm-up, in optimizer steps")


class ActorConfig(_Section):
    optim: OptimConfig = Field(default_factory=OptimConfig)
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    dual_clip: float | None = Field(None, description="dual-clip constant c > 1 (None: off)")
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"] = "token-mean"
    entropy_coef: float = 0.0
    micro_batch_size: int = Field(16, ge=1, description="sequences per forward/backward")
    dp_size: int = Field(1, ge=1, description="data-parallel DeepSpeed ranks (Ray actors)")
    zero_stage: Literal[0, 1, 2, 3] = 1


class CriticConfig(_Section):
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=1e-4))
    value_clip: float | None = 0.2
    warmup_iterations: int = Field(0, ge=0, description="critic-only iterations before the actor")
    micro_batch_size: int = Field(16, ge=1)
    dp_size: int = Field(1, ge=1)
    zero_stage: Literal[0, 1, 2, 3] = 1


class PPOConfig(_Section):
    gamma: float = 1.0
    lam: float = 1.0
    whiten_advantages: bool = True
    whiten_shift_mean: bool = Field(
        True,
        description="whitening subtracts the batch's token mean (GAE); off: scale only, so a "
        "zero advantage stays zero (group advantages are centred per prompt already)",
    )
    whiten_by: Literal["batch", "source"] = Field(
        "batch",
        description="statistics the whitening uses: the whole batch, or each reward source's "
        "rows on their own (model / rule), so a reward model's small score differences weigh "
        "as much in the update as a verifier's 0/1",
    )
    advantage: Literal["gae", "group"] = Field(
        "gae",
        description="gae: GAE on the critic's values (the report's PPO); group: each response's "
        "return-to-go (R and the per-prompt KL charges) against its prompt group's mean return "
        "(the critic is still trained and logged)",
    )
    group_std_normalize: bool = Field(
        True,
        description="group advantages: divide by the group's reward std (off: mean-centred only, "
        "so a reward model's tiny score differences stay tiny)",
    )
    minibatch_size: int = Field(64, ge=1, description="rollouts per gradient update")
    epochs: int = Field(1, ge=1, description="passes over the iteration's rollouts")
    drop_uniform_groups: bool = Field(
        False,
        description="online difficulty filter: leave out verifier prompts whose n responses "
        "all scored alike (all solved or all failed); off while kl.verifiable > 0, since the "
        "KL charge still tells such responses apart",
    )


class PtxConfig(_Section):
    """PPO-ptx (InstructGPT): a supervised loss on reference responses beside the PPO loss.

    Each actor update adds ``coef`` × the mean token NLL of ``batch_size`` records of ``data``
    (prompt + ``extra_info.reference_response``, or a ``response`` column), read in a seeded
    order that is a function of the update count, so a resumed run reads the same ones. It
    holds what the rewarded tasks do not exercise (off when ``coef`` is 0).
    """

    data: list[str] = Field(
        default_factory=list, description="SFT record files (parquet/jsonl), e.g. the base model's"
    )
    coef: float = Field(0.0, ge=0, description="weight of the NLL term (0: off)")
    batch_size: int = Field(16, ge=1, description="records per actor update, over all DP ranks")
    tasks: list[str] = Field(default_factory=list, description="keep only these tasks (empty: all)")
    max_tokens: int = Field(1024, ge=16, description="longer records are left out at load")

    @model_validator(mode="after")
    def _data_when_on(self) -> PtxConfig:
        if self.coef > 0 and not self.data:
            raise ValueError("ptx.coef > 0 needs ptx.data (SFT record files)")
        return self


class KLConfig(_Section):
    general: float = Field(1e-5, ge=0, description="β for reward-model (general) prompts")
    verifiable: float = Field(0.0, ge=0, description="β for verifier prompts")
    estimator: Literal["k1", "k2", "k3"] = "k1"


class FormatConfig(_Section):
    penalty: float = Field(
        0.0, description="reward of a response that breaks <think>…</think>answer"
    )


class RewardConfig(_Section):
    verifier_url: str | None = Field(None, description="verifier API base URL; None: in process")
    verifier_api_key: str | None = None
    verifier_timeout_s: float = Field(30.0, gt=0, description="per HTTP call / sandboxed item")
    verifier_sandbox_workers: int = Field(
        0, ge=0, description="no URL: run verifiers in N sandbox processes (0: in this process)"
    )
    reward_model_address: str | None = Field(None, description="host:port of the RM gRPC server")
    reward_model_path: str | None = Field(
        None, description="RM checkpoint loaded in process when no address is given"
    )
    reward_model_timeout_s: float = Field(60.0, gt=0)
    max_workers: int = Field(4, ge=1, description="concurrent reward requests")


class RoleResources(_Section):
    """Ray resources of each actor of one role (None: the ``resources`` defaults)."""

    cpus: float | None = Field(None, ge=0)
    gpus: float | None = Field(None, ge=0)


class ResourcesConfig(_Section):
    ray_address: str | None = Field(
        None, description="Ray cluster address; None: RAY_ADDRESS / inside a job, else a local Ray"
    )
    num_cpus: int | None = Field(None, description="CPUs of a local Ray (None: all)")
    object_store_mb: int = Field(1024, ge=64, description="object store of a local Ray")
    placement: Literal["pack", "spread", "none"] = Field(
        "pack", description="one placement group for all roles (pack/spread) or plain actors"
    )
    cpus_per_worker: float = Field(0.5, ge=0, description="Ray CPUs reserved by each role actor")
    gpus_per_worker: float = Field(0.0, ge=0, description="fractions < 1 colocate roles on a GPU")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads in each worker")
    rollout: RoleResources = Field(default_factory=RoleResources)
    actor: RoleResources = Field(default_factory=RoleResources)
    critic: RoleResources = Field(default_factory=RoleResources)
    reference: RoleResources = Field(default_factory=RoleResources)

    def of(self, role: str) -> tuple[float, float]:
        """(cpus, gpus) of one actor of ``role``."""
        r: RoleResources = getattr(self, role)
        cpus = self.cpus_per_worker if r.cpus is None else r.cpus
        gpus = self.gpus_per_worker if r.gpus is None else r.gpus
        return cpus, gpus


class TrainerConfig(_Section):
    name: str = "local"
    runs_dir: str = "runs"
    iterations: int = Field(40, ge=0)
    time_limit_minutes: float | None = Field(
        None, gt=0, description="stop iterating after this much training time (then save, eval)"
    )
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="eval every N iterations (0: only before/after)")
    eval_max_prompts: int | None = Field(None, ge=1, description="cap on held-out prompts per eval")
    eval_max_new_tokens: int | None = None
    save_every: int = Field(10, ge=0, description="checkpoint every N iterations (0: end only)")
    keep_checkpoints: int = Field(2, ge=1)
    ledger_redis_url: str | None = Field(
        None, description="Redis prompt ledger (also HYBRIDRL_REDIS_URL); None: SQLite in run dir"
    )
    tensorboard: bool = True
    progress_bar: bool = True


class TrainConfig(_Section):
    """A hybrid-PPO run."""

    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    actor: ActorConfig = Field(default_factory=ActorConfig)
    critic: CriticConfig = Field(default_factory=CriticConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    ptx: PtxConfig = Field(default_factory=PtxConfig)
    format: FormatConfig = Field(default_factory=FormatConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @property
    def rollouts_per_iteration(self) -> int:
        return self.data.prompts_per_iteration * self.rollout.n

    @property
    def updates_per_iteration(self) -> int:
        """Gradient updates per iteration: epochs × minibatches (the report: 1 × 4096/512 = 8)."""
        per_epoch = -(-self.rollouts_per_iteration // self.ppo.minibatch_size)
        return self.ppo.epochs * per_epoch

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.ppo.minibatch_size > self.rollouts_per_iteration:
            raise ValueError(
                f"ppo.minibatch_size ({self.ppo.minibatch_size}) exceeds the rollouts per "
                f"iteration (data.prompts_per_iteration × rollout.n = "
                f"{self.rollouts_per_iteration})"
            )
        for role in ("actor", "critic"):
            dp = getattr(self, role).dp_size
            if self.ppo.minibatch_size < dp:
                raise ValueError(f"ppo.minibatch_size must be at least {role}.dp_size ({dp})")
        return self
