"""Ray at the edge: connecting to (or starting) a cluster, placing role actors, naming failures.

The same command runs against a cluster (``RAY_ADDRESS`` set, as inside ``ray job submit``, or
``resources.ray_address``) and on a laptop (a local Ray started on the fly).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rl.config import ResourcesConfig


class WorkerDiedError(RuntimeError):
    """A role's Ray actor died or raised; the message names the role and rank."""


def init_ray(cfg: ResourcesConfig) -> str:
    """Connect to the configured/ambient cluster, else start a local one; returns which."""
    import ray

    if ray.is_initialized():
        return "existing"
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    if address:
        # RAY_ADDRESS=http://head:8265 is the job-submission address a user may have exported;
        # the driver itself connects to the cluster's GCS, which "auto" finds
        if address.startswith(("http://", "https://")):
            address = "auto"
        ray.init(address=address, runtime_env=env, log_to_driver=True)
        return f"cluster {address}"
    ray.init(
        num_cpus=cfg.num_cpus or os.cpu_count(),
        include_dashboard=False,
        object_store_memory=cfg.object_store_mb * 1024 * 1024,
        runtime_env=env,
        log_to_driver=True,
    )
    return "local"


class Role:
    """The Ray actors of one role; `call` fans a method out, `get` names the role on failure."""

    def __init__(self, name: str, handles: Sequence[Any]):
        self.name = name
        self.handles = list(handles)

    def __len__(self) -> int:
        return len(self.handles)

    def call(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [getattr(h, method).remote(*args, **kwargs) for h in self.handles]

    def call_each(self, method: str, per_rank: Sequence[tuple], **kwargs: Any) -> list[Any]:
        return [
            getattr(h, method).remote(*args, **kwargs)
            for h, args in zip(self.handles, per_rank, strict=True)
        ]

    def get(self, refs: Any) -> Any:
        return get(self.name, refs)


def get(role: str, refs: Any) -> Any:
    """``ray.get`` that turns a dead actor or a failed method into an error naming ``role``."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return ray.get(refs)
    except RayActorError as e:
        raise WorkerDiedError(
            f"the {role} worker died ({type(e).__name__}): {str(e).splitlines()[0][:300]}"
        ) from e
    except RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        raise WorkerDiedError(
            f"the {role} worker failed: {type(cause).__name__}: {str(cause)[-1500:]}"
        ) from e


class Placement:
    """One placement group holding a bundle per role actor (pack or spread), or none."""

    def __init__(self, cfg: ResourcesConfig, counts: dict[str, int]):
        from ray.util.placement_group import placement_group

        self.cfg = cfg
        self.slots: dict[str, list[int]] = {}
        self.pg = None
        if cfg.placement == "none":
            return
        bundles = []
        for role, n in counts.items():
            cpus, gpus = cfg.of(role)
            for _ in range(n):
                self.slots.setdefault(role, []).append(len(bundles))
                bundle = {"CPU": cpus}
                if gpus:
                    bundle["GPU"] = gpus
                bundles.append(bundle)
        self.pg = placement_group(bundles, strategy=cfg.placement.upper())
        import ray

        try:
            ray.get(self.pg.ready(), timeout=300)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"Ray could not reserve the resources of the run ({bundles}); lower "
                "resources.cpus_per_worker / gpus_per_worker or add nodes"
            ) from None

    def options(self, role: str, rank: int) -> dict[str, Any]:
        cpus, gpus = self.cfg.of(role)
        opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0}
        if self.pg is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=self.pg, placement_group_bundle_index=self.slots[role][rank]
            )
        return opts

    def remove(self) -> None:
        if self.pg is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.pg)
