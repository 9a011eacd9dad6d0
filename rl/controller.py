"""The single controller of hybrid PPO: one `step()` holds the whole algorithm, in order.

Workers (Ray actors) only compute; this process samples prompts, routes rewards, turns them
into advantages (rl/core_algos.py) and tells each role what to do next.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridrl.config import dump_config
from hybridrl.records import PromptRecord
from rl import core_algos as ca
from rl.batching import (
    RolloutBatch,
    group_advantages,
    length_grouped_chunks,
    minibatches,
    pad_rows,
    plan_inference,
    plan_updates,
    prompt_order,
)
from rl.cluster import Placement, Role, get, init_ray
from rl.config import TrainConfig
from rl.data import draw, load_prompts, open_ledger, task_of
from rl.report import binomial_se
from rl.rewards import RewardRouter, Scored
from rl.rollout import RolloutOutput, RolloutPrompt, SamplingParams
from rl.tracking import Tracker

CONTROLLER_STATE = "controller.json"
COMPLETE_MARKER = "COMPLETE"


def to_prompt(record: PromptRecord) -> RolloutPrompt:
    return RolloutPrompt(
        messages=[m.model_dump() for m in record.prompt],
        images=[i.model_dump() for i in record.images],
        videos=[v.model_dump() for v in record.videos],
    )


class Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[f"time/{name}"] = self.times.get(f"time/{name}", 0.0) + (
                time.perf_counter() - t0
            )


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints ``step_N`` of a run, oldest first."""
    out = []
    for p in run_dir.glob("step_*"):
        if p.is_dir() and (p / COMPLETE_MARKER).is_file() and p.name[5:].isdigit():
            out.append((int(p.name[5:]), p))
    return sorted(out)


class Controller:
    """Builds the roles, runs iterations, evaluates, checkpoints and resumes."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print):
        self.cfg = cfg
        self.log = log
        self.run_dir = Path(cfg.trainer.runs_dir) / cfg.trainer.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.run_dir / "config.yaml")
        self.iteration = 0
        self.position = 0  # prompts consumed from the sampler's stream
        # mean response tokens per task in recent iterations: how generate calls are filled
        self.response_len: dict[str, float] = {}
        random.seed(cfg.trainer.seed)
        np.random.seed(cfg.trainer.seed)
        torch.manual_seed(cfg.trainer.seed)

        from rl.rollout import ENGINES

        if cfg.rollout.engine not in ENGINES:
            raise ValueError(
                f"rollout.engine {cfg.rollout.engine!r} is not available; known: {sorted(ENGINES)}"
            )
        self.processor = _load_processor(cfg)
        # the ledger names prompts by their row in the train file, whatever was filtered out
        self.train_rows, self.train = self._fitting(load_prompts(cfg.data.train), cfg.data.train)
        self.test = (
            self._fitting(load_prompts(cfg.data.test), cfg.data.test)[1] if cfg.data.test else []
        )
        self.router = RewardRouter(cfg.reward, cfg.format)
        import os

        redis_url = cfg.trainer.ledger_redis_url or os.environ.get("HYBRIDRL_REDIS_URL")
        self.ledger = open_ledger(self.run_dir, cfg.trainer.name, redis_url)

        self.log(f"ray: {init_ray(cfg.resources)}")
        self._build_roles()
        self.resumed_from = self._resume() if resume else None
        self.tracker = Tracker(
            self.run_dir,
            cfg.trainer.iterations,
            start=self.iteration,
            tensorboard=cfg.trainer.tensorboard,
            progress_bar=cfg.trainer.progress_bar,
        )

    def _fitting(
        self, records: list[PromptRecord], source: str
    ) -> tuple[list[int], list[PromptRecord]]:
        """(row numbers, records) of the prompts of ``data.tasks`` (all when empty) that fit
        ``data.max_prompt_tokens``, their images and videos included."""
        limit, tasks = self.cfg.data.max_prompt_tokens, set(self.cfg.data.tasks)
        rows, kept, too_long = [], [], 0
        for i, r in enumerate(records):
            if tasks and task_of(r) not in tasks:
                continue
            p = to_prompt(r)
            if len(self.processor.encode(p.messages, p.images, p.videos).input_ids) > limit:
                too_long += 1
                continue
            rows.append(i)
            kept.append(r)
        if too_long:
            self.log(f"{source}: dropped {too_long} prompts over {limit} tokens")
        if not kept:
            raise ValueError(f"{source}: no prompt of tasks {sorted(tasks) or 'any'} fits")
        return rows, kept

    # ------------------------------------------------------------------ roles

    def _build_roles(self) -> None:
        import ray

        from rl import workers

        cfg, res = self.cfg, self.cfg.resources
        counts = {
            "rollout": cfg.rollout.num_engines,
            "actor": cfg.actor.dp_size,
            "critic": cfg.critic.dp_size,
            "reference": 1,
        }
        self.placement = Placement(res, counts)
        threads = res.torch_threads

        def spawn(cls: type, role: str, rank: int, *args: Any) -> Any:
            return ray.remote(cls).options(**self.placement.options(role, rank)).remote(*args)

        self.rollout = Role(
            "rollout",
            [
                spawn(
                    workers.RolloutWorker,
                    "rollout",
                    i,
                    cfg.rollout.engine,
                    cfg.model,
                    cfg.rollout.micro_batch_size,
                    threads,
                )
                for i in range(cfg.rollout.num_engines)
            ],
        )
        self.reference = Role(
            "reference", [spawn(workers.ReferenceWorker, "reference", 0, cfg.model, threads)]
        )
        self.actor = Role(
            "actor",
            [spawn(workers.PolicyTrainer, "actor", r, threads) for r in range(cfg.actor.dp_size)],
        )
        self.critic = Role(
            "critic",
            [spawn(workers.CriticTrainer, "critic", r, threads) for r in range(cfg.critic.dp_size)],
        )
        setups = []
        for role, role_cfg in ((self.actor, cfg.actor), (self.critic, cfg.critic)):
            addr, port = role.get(role.handles[0].rendezvous.remote())
            refs = [
                h.setup.remote(cfg.model, role_cfg, rank, len(role), addr, port)
                for rank, h in enumerate(role.handles)
            ]
            setups.append((role, refs))
        for role, refs in setups:
            info = role.get(refs)[0]
            self.log(
                f"{role.name}: {len(role)} rank(s), {info['trainable']:,} trainable parameters"
                f" ({info['frozen']:,} frozen)"
            )
        if cfg.ptx.coef > 0:
            info = self.actor.get(self.actor.call("setup_ptx", cfg.ptx, cfg.trainer.seed))[0]
            self.log(
                f"ptx: {info['records']:,} records of {', '.join(cfg.ptx.data)} "
                f"({info['too_long']:,} longer than {cfg.ptx.max_tokens} tokens left out), "
                f"{cfg.ptx.batch_size} per update at coef {cfg.ptx.coef:g}"
            )
        self.rollout.get(self.rollout.call("pid"))
        self.reference.get(self.reference.call("pid"))

    # ------------------------------------------------------------------ one iteration

    def step(self) -> dict[str, float]:
        """One PPO iteration: sample → generate → reward → logprobs/values → advantages →
        critic and actor updates → weight sync → metrics."""
        cfg, t = self.cfg, Timer()
        it = self.iteration + 1
        t0 = time.perf_counter()

        # 1. sample prompts (a pure function of seed and stream position: resumable)
        n_prompts = cfg.data.prompts_per_iteration
        indices = draw(
            len(self.train), cfg.trainer.seed, self.position, n_prompts, cfg.data.shuffle
        )
        records = [self.train[i] for i in indices]

        # 2.+3. generate n responses per prompt; each finished chunk is scored at once, so
        # reward requests overlap the remaining generation
        params = SamplingParams(
            n=cfg.rollout.n,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            max_tokens=cfg.rollout.max_new_tokens,
        )
        outputs, scores = self._generate_and_score(
            records, params, seed=cfg.trainer.seed * 7919 + it, t=t
        )
        # samples whose reward could not be computed are left out (and counted)
        scored = [i for i, s in enumerate(scores) if s.reward is not None]
        if not scored:
            raise RuntimeError(f"iteration {it}: every sample lost its reward; see the log")
        metrics = self._reward_metrics(records, outputs, scores)
        metrics["samples/excluded"] = float(len(scores) - len(scored))
        outputs, scores = [outputs[i] for i in scored], [scores[i] for i in scored]
        # online difficulty filter: a rule prompt whose responses all scored alike teaches
        # nothing but a push on its whole distribution when the critic cannot tell it apart;
        # with a KL charge on rule prompts (kl.verifiable > 0) such a group still carries it
        if cfg.ppo.drop_uniform_groups:
            train = uniform_groups_dropped(outputs, scores, cfg.kl.verifiable)
        else:
            train = list(range(len(outputs)))
        metrics["samples/trained"] = float(len(train))
        if train:
            metrics.update(
                self._train(records, [outputs[i] for i in train], [scores[i] for i in train], it, t)
            )

        # 8. bookkeeping and metrics
        self._track_response_lengths(records, outputs)
        self.iteration, self.position = it, self.position + n_prompts
        self.ledger.record(it, self.position - n_prompts, [self.train_rows[i] for i in indices])
        t.times["time/iteration"] = time.perf_counter() - t0
        metrics.update(t.times)
        gen_tokens = float(sum(len(o.token_ids) for o in outputs))
        metrics["throughput/tokens_per_s"] = gen_tokens / max(t.times["time/generate"], 1e-9)
        self.tracker.log(it, metrics)
        self._log_samples(it, records, outputs, scores)
        return metrics

    def _train(
        self,
        records: list[PromptRecord],
        outputs: list[RolloutOutput],
        scores: list[Scored],
        it: int,
        t: Timer,
    ) -> dict[str, float]:
        """Steps 4–7 on the samples kept for training; returns their metrics."""
        cfg = self.cfg
        batch = self._rollout_batch(records, outputs)
        n, r_len = len(batch), batch.max_response_len
        mask = pad_rows([[1.0] * len(o.token_ids) for o in outputs], r_len)
        rollout_logp = pad_rows([o.logprobs for o in outputs], r_len)

        # 4. old logprobs + entropy (actor), reference logprobs, values (critic): concurrently
        batch_ref = _put(batch)
        temp = cfg.rollout.temperature
        with t("logprobs"):
            old_refs = self._infer(
                self.actor, "logprobs", batch_ref, n, cfg.actor.micro_batch_size, temp
            )
            ref_refs = self.reference.call(
                "logprobs", batch_ref, list(range(n)), cfg.actor.micro_batch_size, temp
            )
            val_refs = self._infer(self.critic, "values", batch_ref, n, cfg.critic.micro_batch_size)
            old_logp, entropy = (x * mask for x in self._gather(self.actor, old_refs, n))
            ref_logp = self.reference.get(ref_refs)[0] * mask
        with t("values"):
            values = self._gather(self.critic, val_refs, n)[0] * mask

        # 5. token rewards with a per-prompt KL coefficient, GAE, whitening
        rewards = torch.tensor([s.reward for s in scores], dtype=torch.float32)
        styles = [records[o.prompt].reward_model.style for o in outputs]
        beta = torch.tensor([cfg.kl.general if s == "model" else cfg.kl.verifiable for s in styles])
        kl = ca.kl_penalty(old_logp, ref_logp, cfg.kl.estimator) * mask
        token_rewards = ca.token_rewards(rewards, kl, beta, mask)
        advantages, returns = ca.gae(token_rewards, values, mask, cfg.ppo.gamma, cfg.ppo.lam)
        if cfg.ppo.advantage == "group":
            advantages = group_advantages(
                token_rewards,
                [o.prompt for o in outputs],
                mask,
                cfg.ppo.gamma,
                std_normalize=cfg.ppo.group_std_normalize,
            )
        # the token mean whitening would subtract: the push every zero-advantage token gets
        adv_token_mean = float(ca.masked_mean(advantages, mask))
        # each reward source's advantage spread before whitening: how much of the update it gets
        source_rows = {src: [i for i, st in enumerate(styles) if st == src] for src in set(styles)}
        adv_std = {
            src: float(ca.masked_var(advantages[rows], mask[rows]).sqrt())
            for src, rows in source_rows.items()
            if len(rows) > 1
        }
        if cfg.ppo.whiten_advantages and cfg.ppo.whiten_by == "source":
            advantages = ca.whiten_by_group(advantages, mask, styles, cfg.ppo.whiten_shift_mean)
        elif cfg.ppo.whiten_advantages and cfg.ppo.whiten_shift_mean:
            advantages = ca.masked_whiten(advantages, mask)
        elif cfg.ppo.whiten_advantages:
            advantages = ca.masked_scale(advantages, mask)

        # 6. critic update, then actor update (after the critic warm-up), over minibatches
        # the number of gradient updates stays as configured when samples were left out
        per_epoch = cfg.updates_per_iteration // cfg.ppo.epochs
        mbs = minibatches(
            n, -(-n // per_epoch), cfg.ppo.epochs, seed=cfg.trainer.seed * 104729 + it
        )
        tokens = mask.sum(-1).tolist()
        train_actor = it > cfg.critic.warmup_iterations
        actor_stats: list[dict[str, float]] = []
        with t("updates"):
            critic_plan = plan_updates(
                mbs, tokens, len(self.critic), cfg.critic.micro_batch_size, "token-mean"
            )
            critic_tensors = _put({"values": values, "returns": returns, "mask": mask})
            critic_refs = self.critic.call_each(
                "update", [(batch_ref, critic_tensors, p) for p in critic_plan]
            )
            if train_actor:
                actor_plan = plan_updates(
                    mbs, tokens, len(self.actor), cfg.actor.micro_batch_size, cfg.actor.loss_agg
                )
                tensors = _put({"old_logp": old_logp, "advantages": advantages, "mask": mask})
                # PPO-ptx reads the records of this iteration's global update numbers
                ptx_update = (it - 1) * cfg.updates_per_iteration if cfg.ptx.coef > 0 else None
                actor_refs = self.actor.call_each(
                    "update", [(batch_ref, tensors, p, temp, ptx_update) for p in actor_plan]
                )
                actor_stats = self.actor.get(actor_refs)[0]
            critic_stats = self.critic.get(critic_refs)[0]

        # 7. weight sync actor -> rollout engines
        if train_actor:
            with t("sync"):
                self._sync_weights()

        m: dict[str, float] = {}
        for src, rows in sorted(source_rows.items()):
            m[f"kl/{src}"] = float(ca.masked_mean(kl[rows], mask[rows]))
        m["kl/mean"] = float(ca.masked_mean(kl, mask))
        m["advantage/token_mean_before_whitening"] = adv_token_mean
        for src, std in sorted(adv_std.items()):
            m[f"advantage/std_before_whitening/{src}"] = std
        m["entropy/mean"] = float(ca.masked_mean(entropy, mask))
        m["critic/explained_variance"] = float(ca.explained_variance(values, returns, mask))
        m["critic/value_mean"] = float(ca.masked_mean(values, mask))
        m["check/rollout_logprob_max_diff"] = float(((old_logp - rollout_logp).abs() * mask).max())
        for name, stats in (("actor", actor_stats), ("critic", critic_stats)):
            for k in sorted({k for s in stats for k in s}):
                vals = [s[k] for s in stats if k in s and np.isfinite(s[k])]
                if vals:
                    m[f"{name}/{k}"] = float(np.mean(vals))
        m["actor/updates"] = float(len(actor_stats))
        return m

    # ------------------------------------------------------------------ step helpers

    def _generate_and_score(
        self, records: list[PromptRecord], params: SamplingParams, seed: int, t: Timer
    ) -> tuple[list[RolloutOutput], list[Scored]]:
        """Generation spread over the engines in chunks; each chunk is scored as it lands.

        Returns the outputs and scores in prompt order (each prompt's n samples together)."""
        import ray

        prompts = [to_prompt(r) for r in records]
        per_call = max(1, self.cfg.rollout.micro_batch_size // params.n)
        known = self.response_len if self.cfg.rollout.group_by_length else {}
        chunks = length_grouped_chunks([known.get(task_of(r), 0.0) for r in records], per_call)
        pending = {}
        for c, idx in enumerate(chunks):
            engine = self.rollout.handles[c % len(self.rollout)]
            ref = engine.generate.remote([prompts[i] for i in idx], params, seed * 1009 + c)
            pending[ref] = idx
        results: dict[int, tuple[list[RolloutOutput], Any]] = {}
        order = {ref: c for c, ref in enumerate(pending)}
        with t("generate"):
            remaining = list(pending)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                ref = done[0]
                idx = pending[ref]
                outs = get("rollout", ref)
                for o in outs:
                    o.prompt = idx[o.prompt]  # chunk-local -> iteration prompt index
                future = self.router.submit(
                    [records[o.prompt] for o in outs], [o.text for o in outs]
                )
                results[order[ref]] = (outs, future)
        with t("reward"):
            outputs, scores = [], []
            for c in range(len(chunks)):
                outs, future = results[c]
                outputs += outs
                scores += future.result()
        order = prompt_order([o.prompt for o in outputs])  # whatever the chunks were
        return [outputs[i] for i in order], [scores[i] for i in order]

    def _rollout_batch(
        self, records: list[PromptRecord], outputs: list[RolloutOutput]
    ) -> RolloutBatch:
        used = sorted({o.prompt for o in outputs})
        slot = {p: i for i, p in enumerate(used)}
        encoded = []
        for p in used:
            pr = to_prompt(records[p])
            encoded.append(self.processor.encode(pr.messages, pr.images, pr.videos))
        return RolloutBatch(
            prompts=encoded,
            prompt_of=[slot[o.prompt] for o in outputs],
            responses=[o.token_ids for o in outputs],
        )

    def _infer(
        self, role: Role, method: str, batch_ref: Any, n: int, micro: int, *extra: Any
    ) -> tuple:
        plans, real = plan_inference(n, len(role), micro)
        return role.call_each(method, [(batch_ref, p, *extra) for p in plans]), real

    def _gather(self, role: Role, refs_real: tuple, n: int) -> list[torch.Tensor]:
        refs, real = refs_real
        results = role.get(refs)
        results = [r if isinstance(r, tuple) else (r,) for r in results]
        out = []
        for k in range(len(results[0])):
            full = torch.zeros(n, results[0][k].shape[1])
            for rows, res in zip(real, results, strict=True):
                if rows:
                    full[rows] = res[k][: len(rows)]
            out.append(full)
        return out

    def _track_response_lengths(self, records, outputs, decay: float = 0.5) -> None:
        """Each task's mean response length, averaged over iterations with weight ``decay``."""
        lengths: dict[str, list[int]] = defaultdict(list)
        for o in outputs:
            lengths[task_of(records[o.prompt])].append(len(o.token_ids))
        for task, ls in lengths.items():
            now = sum(ls) / len(ls)
            old = self.response_len.get(task)
            self.response_len[task] = now if old is None else decay * old + (1 - decay) * now

    def _log_samples(self, it: int, records, outputs, scores, per_task: int = 2) -> None:
        """A few responses per task and iteration to ``samples.jsonl``, for reading."""
        seen: dict[str, int] = defaultdict(int)
        with (self.run_dir / "samples.jsonl").open("a") as f:
            for o, s in zip(outputs, scores, strict=True):
                task = task_of(records[o.prompt])
                if seen[task] >= per_task:
                    continue
                seen[task] += 1
                row = {"iteration": it, "task": task, "reward": s.reward, "response": o.text}
                f.write(json.dumps(row) + "\n")

    def _sync_weights(self) -> None:
        refs = self.actor.call("state_dict")
        state = self.actor.get(refs)[0]
        state_ref = _put(state)
        self.rollout.get(self.rollout.call("update_weights", state_ref))

    def _reward_metrics(self, records, outputs, scores) -> dict[str, float]:
        """Reward, accuracy and format figures over every scored sample of the iteration."""
        cfg = self.cfg
        ok = [(o, s) for o, s in zip(outputs, scores, strict=True) if s.reward is not None]
        m: dict[str, float] = {"reward/mean": float(np.mean([s.reward for _, s in ok]))}
        by_source: dict[str, list[Scored]] = defaultdict(list)
        by_task: dict[str, list[Scored]] = defaultdict(list)
        for o, s in ok:
            by_source[s.source].append(s)
            by_task[task_of(records[o.prompt])].append(s)
        for src, ss in sorted(by_source.items()):
            m[f"reward/{src}"] = float(np.mean([s.reward for s in ss]))
            m[f"acc/{src}"] = float(np.mean([s.correct for s in ss]))
        for task, ss in sorted(by_task.items()):
            m[f"reward/task/{task}"] = float(np.mean([s.reward for s in ss]))
            m[f"acc/task/{task}"] = float(np.mean([s.correct for s in ss]))
        m["format/rate"] = float(np.mean([s.format_ok for _, s in ok]))
        lengths = [len(o.token_ids) for o in outputs]
        m["response/length"] = float(np.mean(lengths))
        eos = set(self.processor.eos_token_ids)
        m["response/truncated"] = float(
            np.mean(
                [
                    len(o.token_ids) >= cfg.rollout.max_new_tokens and o.token_ids[-1] not in eos
                    for o in outputs
                ]
            )
        )
        m["samples/total"] = float(len(outputs))
        return m

    # ------------------------------------------------------------------ eval

    def evaluate(self, label: str) -> dict[str, Any]:
        """Greedy responses on the held-out split, scored by the same router; per-task figures."""
        cfg = self.cfg
        records = (
            self.test[: cfg.trainer.eval_max_prompts] if cfg.trainer.eval_max_prompts else self.test
        )
        if not records:
            return {}
        params = SamplingParams(
            n=1,
            temperature=0.0,
            max_tokens=cfg.trainer.eval_max_new_tokens or cfg.rollout.max_new_tokens,
        )
        outputs, scores = self._generate_and_score(records, params, seed=0, t=Timer())
        responses = [""] * len(records)
        for o in outputs:
            responses[o.prompt] = o.text
        result = summarise_eval(records, scores, responses)
        self.tracker.log_eval(self.iteration, label, result)
        return result

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        """``step_N/``: actor (HF + DeepSpeed state), critic (DeepSpeed state), controller state."""
        final = self.run_dir / f"step_{self.iteration}"
        tmp = self.run_dir / f".step_{self.iteration}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        refs = self.actor.call("save_pretrained", str(tmp / "actor"))
        refs += self.actor.call("save_state", str(tmp / "actor_state"))
        self.actor.get(refs)
        self.critic.get(self.critic.call("save_state", str(tmp / "critic_state")))
        state = {
            "iteration": self.iteration,
            "position": self.position,
            "response_len": self.response_len,
            "python_rng": _jsonable_rng(random.getstate()),
            "numpy_rng": _jsonable_rng(np.random.get_state()),
            "torch_rng": torch.get_rng_state().tolist(),
        }
        (tmp / CONTROLLER_STATE).write_text(json.dumps(state))
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for _, old in checkpoints(self.run_dir)[: -self.cfg.trainer.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _resume(self) -> Path | None:
        found = checkpoints(self.run_dir)
        if not found:
            self.log("resume: no checkpoint yet, starting from the beginning")
            self.ledger.rollback_after(0)
            return None
        _, path = found[-1]
        refs = self.actor.call("load_state", str(path / "actor_state"))
        refs2 = self.critic.call("load_state", str(path / "critic_state"))
        self.actor.get(refs)
        self.critic.get(refs2)
        state = json.loads((path / CONTROLLER_STATE).read_text())
        self.iteration, self.position = state["iteration"], state["position"]
        self.response_len = state.get("response_len", {})
        random.setstate(_rng_from_json(state["python_rng"]))
        np.random.set_state(_rng_from_json(state["numpy_rng"]))
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        dropped = self.ledger.rollback_after(self.iteration)
        self._sync_weights()
        self.log(
            f"resumed from {path} (iteration {self.iteration}, prompt position {self.position}; "
            f"{dropped} ledger entries of redone iterations rolled back)"
        )
        return path

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        cfg = self.cfg.trainer
        evals = {e["label"]: e for e in _read_evals(self.run_dir)}
        if "before" not in evals:
            self.tracker.write("eval before training ...")
            evals["before"] = self.evaluate("before")
        started = time.monotonic()
        while self.iteration < cfg.iterations:
            if cfg.time_limit_minutes and time.monotonic() - started > 60 * cfg.time_limit_minutes:
                self.tracker.write(
                    f"time limit of {cfg.time_limit_minutes:g} min reached at iteration "
                    f"{self.iteration}"
                )
                break
            self.step()
            if (
                cfg.eval_every
                and self.iteration % cfg.eval_every == 0
                and self.iteration < cfg.iterations
            ):
                self.evaluate(f"iteration {self.iteration}")
            if cfg.save_every and self.iteration % cfg.save_every == 0:
                self.save()
        if not checkpoints(self.run_dir) or checkpoints(self.run_dir)[-1][0] != self.iteration:
            self.save()
        evals["after"] = self.evaluate("after")
        return {"before": evals.get("before", {}), "after": evals["after"]}

    def close(self) -> None:
        self.tracker.close()
        self.router.close()
        self.ledger.close()
        import ray

        for role in ("rollout", "reference", "actor", "critic"):
            for h in getattr(getattr(self, role, None), "handles", []):
                ray.kill(h)
        if getattr(self, "placement", None) is not None:
            self.placement.remove()


# --------------------------------------------------------------------------- helpers


def uniform_groups_dropped(
    outputs: list[RolloutOutput], scores: list[Scored], kl_verifiable: float = 0.0
) -> list[int]:
    """Indices of the samples to train on: every sample except those of verifier-scored prompts
    whose responses all got the same reward (all solved or all failed). With a KL charge on
    verifier prompts (``kl_verifiable`` > 0) such responses still differ by the KL they carry,
    so every sample stays."""
    if kl_verifiable > 0:
        return list(range(len(outputs)))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, o in enumerate(outputs):
        groups[o.prompt].append(i)
    keep = []
    for rows in groups.values():
        rewards = {scores[i].reward for i in rows}
        uniform = len(rows) > 1 and len(rewards) == 1 and scores[rows[0]].source == "rule"
        if not uniform:
            keep += rows
    return sorted(keep)


def summarise_eval(
    records: list[PromptRecord], scores: list[Scored], responses: list[str] | None = None
) -> dict[str, Any]:
    """Per task: accuracy (rule) or mean reward (model); plus the verifiable mean and counts.

    With the ``responses``, prompts whose ground truth is a synth caption also get
    ``caption_facts/<fact>``: the mean share of the scene's facts the greedy caption states
    (`synth.caption.caption_fact_scores`), an audit of what the reward model's caption scores
    reward, outside the training reward.

    Each accuracy comes with its binomial standard error under ``se/<key>``, and each task's
    per-prompt results, in prompt order, under ``outcomes/<key>`` (``1`` correct, ``0`` not,
    ``-`` excluded; ``outcomes/verifiable_acc`` joins the verifier-scored tasks'): two evals of
    the same prompts can then be compared prompt by prompt (`rl.report.eval_table`)."""
    by_task: dict[str, list[Scored]] = defaultdict(list)
    for r, s in zip(records, scores, strict=True):
        by_task[task_of(r)].append(s)
    out: dict[str, Any] = {}
    rule_correct: list[bool] = []
    rule_outcomes = ""  # the verifier-scored tasks' outcome strings, in task order
    model_rewards: list[float] = []
    excluded = 0
    for task, ss in sorted(by_task.items()):
        ok = [s for s in ss if s.reward is not None]
        excluded += len(ss) - len(ok)
        outcomes = "".join("-" if s.reward is None else "1" if s.correct else "0" for s in ss)
        out[f"outcomes/acc/{task}"] = outcomes
        if not ok:
            continue
        out[f"acc/{task}"] = float(np.mean([s.correct for s in ok]))
        out[f"se/acc/{task}"] = binomial_se(out[f"acc/{task}"], len(ok))
        out[f"reward/{task}"] = float(np.mean([s.reward for s in ok]))
        out[f"format/{task}"] = float(np.mean([s.format_ok for s in ok]))
        if ok[0].source == "rule":
            rule_correct += [s.correct for s in ok]
            rule_outcomes += outcomes
        else:
            model_rewards += [s.reward for s in ok]
    if rule_correct:
        out["verifiable_acc"] = float(np.mean(rule_correct))
        out["se/verifiable_acc"] = binomial_se(out["verifiable_acc"], len(rule_correct))
        out["outcomes/verifiable_acc"] = rule_outcomes
    if model_rewards:
        out["model_reward"] = float(np.mean(model_rewards))
    if responses is not None:
        out.update(_caption_facts(records, scores, responses))
    out["format_rate"] = float(np.mean([s.format_ok for s in scores])) if scores else 0.0
    out["n"] = float(len(scores))
    out["excluded"] = float(excluded)
    return out


def _caption_facts(
    records: list[PromptRecord], scores: list[Scored], responses: list[str]
) -> dict[str, float]:
    from synth.caption import FACT_SCORES, caption_fact_scores

    rows = []
    for r, s, text in zip(records, scores, responses, strict=True):
        truth = r.reward_model.ground_truth
        if (
            s.reward is None
            or not isinstance(truth, dict)
            or not isinstance(truth.get("caption"), str)
        ):
            continue
        facts = caption_fact_scores(text, truth["caption"])
        if facts is not None:
            rows.append(facts)
    if not rows:
        return {}
    return {f"caption_facts/{k}": float(np.mean([f[k] for f in rows])) for k in FACT_SCORES}


def _read_evals(run_dir: Path) -> list[dict[str, Any]]:
    from rl.tracking import read_jsonl

    return read_jsonl(run_dir / "eval.jsonl")


def _put(obj: Any) -> Any:
    import ray

    return ray.put(obj)


def _load_processor(cfg: TrainConfig):
    from vlm.processor import VLProcessor

    if cfg.model.path:
        return VLProcessor.from_pretrained(cfg.model.path)
    import vlm

    return vlm.create(cfg.model.preset or "tiny")[1]


def _jsonable_rng(state: Any) -> Any:
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist()}
    if isinstance(state, tuple | list):
        return [_jsonable_rng(s) for s in state]
    return state


def _rng_from_json(state: Any) -> Any:
    if isinstance(state, dict) and "__ndarray__" in state:
        return np.array(state["__ndarray__"], dtype=np.uint32)
    if isinstance(state, list):
        return tuple(_rng_from_json(s) for s in state)
    return state
