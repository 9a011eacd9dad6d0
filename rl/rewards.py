"""Reward routing: each response gets the format check, then a verifier or the reward model.

- A response that breaks ``<think>…</think>`` + non-empty solution gets ``format.penalty``.
- ``reward_model.style == "rule"``: the verifier named by ``extra_info.verifier`` (or the last
  part of ``data_source``), over HTTP (``POST /v1/verify/batch``) or in process.
- ``reward_model.style == "model"``: the pairwise reward model, P(response ≻ reference) with
  the prompt's ``extra_info.reference_response``, over gRPC or with the RM loaded in process.

Both rewards lie in [0, 1]. A service that fails or times out, or a verifier result with
``error`` set, yields ``reward=None``: the sample is left out of the update and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from hybridrl.records import PromptRecord
from rl.config import FormatConfig, RewardConfig
from verifiers.response_format import check_format

log = logging.getLogger("hybridrl.rl.rewards")


@dataclass
class Scored:
    """The reward of one response; ``reward is None`` means excluded (the scorer failed)."""

    reward: float | None
    correct: bool
    format_ok: bool
    source: str  # "rule" | "model"
    error: str | None = None


@dataclass(frozen=True)
class VerifyItem:
    verifier: str
    response: str
    reference: Any


@dataclass(frozen=True)
class CompareItem:
    prompt: list[dict[str, str]]
    images: list[Any]
    response: str
    reference: str


class VerifierBackend(Protocol):
    def verify(self, items: Sequence[VerifyItem]) -> list[tuple[float, bool, str | None]]:
        """(reward, correct, error) per item, in order; raises when the whole call fails."""
        ...


class RewardModelBackend(Protocol):
    def compare(self, items: Sequence[CompareItem]) -> list[float]:
        """P(response ≻ reference) per item, in order; raises when the call fails."""
        ...


# --------------------------------------------------------------------------- verifier backends


class InProcessVerifiers:
    """Verifier functions called in this process (the embedded default)."""

    def verify(self, items: Sequence[VerifyItem]) -> list[tuple[float, bool, str | None]]:
        import verifiers

        out = []
        for it in items:
            try:
                r = verifiers.verify(
                    it.verifier, it.response, it.reference, {"require_format": True}
                )
                out.append((r.reward, r.correct, r.error))
            except verifiers.UnknownVerifierError as e:
                out.append((0.0, False, str(e)))
        return out


class SandboxVerifiers:
    """Verifier functions in the sandbox pool's killable worker processes (timeouts, rlimits),
    without the HTTP service: a verifier that hangs or crashes costs one sample, not the run."""

    def __init__(self, workers: int, timeout_s: float):
        from verifiers.sandbox import SandboxPool

        self.pool = SandboxPool(workers=workers, timeout_s=timeout_s).start()

    def verify(self, items: Sequence[VerifyItem]) -> list[tuple[float, bool, str | None]]:
        futures = [
            self.pool.submit(it.verifier, it.response, it.reference, {"require_format": True})
            for it in items
        ]
        return [(r.reward, r.correct, r.error) for r in (f.result() for f in futures)]

    def close(self) -> None:
        self.pool.close()


class HttpVerifiers:
    """The verifier API's batch endpoint."""

    def __init__(self, url: str, timeout_s: float, api_key: str | None = None):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)

    def verify(self, items: Sequence[VerifyItem]) -> list[tuple[float, bool, str | None]]:
        body = {
            "items": [
                {
                    "verifier": it.verifier,
                    "response": it.response,
                    "reference": it.reference,
                    "options": {"require_format": True},
                }
                for it in items
            ]
        }
        resp = self.client.post("/v1/verify/batch", json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"verifier API answered {resp.status_code}: {resp.text[:300]}")
        results = resp.json()["results"]
        if len(results) != len(items):
            raise RuntimeError(f"verifier API returned {len(results)} results for {len(items)}")
        return [(float(r["reward"]), bool(r["correct"]), r.get("error")) for r in results]


# --------------------------------------------------------------------------- reward-model backends


class EmbeddedRewardModel:
    """The reward model loaded in this process."""

    def __init__(self, path: str, batch_size: int = 32):
        from reward_model.model import RewardModel

        self.rm = RewardModel.load(path)
        self.batch_size = batch_size

    def compare(self, items: Sequence[CompareItem]) -> list[float]:
        from reward_model.model import PairInput

        pairs = [PairInput(it.prompt, it.images, it.response, it.reference) for it in items]
        return [c.p for c in self.rm.compare(pairs, batch_size=self.batch_size)]


class GrpcRewardModel:
    """The reward-model server over gRPC (`reward_model.client`)."""

    def __init__(self, address: str, timeout_s: float):
        from reward_model.client import RewardModelClient

        self.client = RewardModelClient(address, timeout_s=timeout_s)

    def compare(self, items: Sequence[CompareItem]) -> list[float]:
        return self.client.score_batch(
            [it.prompt for it in items],
            [it.response for it in items],
            [it.reference for it in items],
            [[_image_input(im) for im in it.images] for it in items],
        )


def _image_input(image: Any) -> Any:
    # prompt records hold {"bytes", "path"} structs; the client takes bytes or a path
    if isinstance(image, dict):
        return image.get("bytes") or image["path"]
    return image


# --------------------------------------------------------------------------- the router


def verifier_name(record: PromptRecord) -> str:
    """``extra_info.verifier``, else the last path part of ``data_source`` (``synth/math`` → math)."""
    return record.extra_info.verifier or record.data_source.rsplit("/", 1)[-1]


class RewardRouter:
    """Scores responses of both reward sources; `submit` runs a chunk in a background thread."""

    def __init__(
        self,
        cfg: RewardConfig,
        fmt: FormatConfig,
        verifier: VerifierBackend | None = None,
        reward_model: RewardModelBackend | None = None,
    ):
        self.cfg, self.fmt = cfg, fmt
        if verifier is None:
            if cfg.verifier_url:
                verifier = HttpVerifiers(
                    cfg.verifier_url, cfg.verifier_timeout_s, cfg.verifier_api_key
                )
            elif cfg.verifier_sandbox_workers:
                verifier = SandboxVerifiers(cfg.verifier_sandbox_workers, cfg.verifier_timeout_s)
            else:
                verifier = InProcessVerifiers()
        self.verifier = verifier
        self._rm = reward_model
        self.pool = ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="reward")

    @property
    def reward_model(self) -> RewardModelBackend:
        # built on first use: runs without "model" prompts need no RM at all
        if self._rm is None:
            if self.cfg.reward_model_address:
                self._rm = GrpcRewardModel(
                    self.cfg.reward_model_address, self.cfg.reward_model_timeout_s
                )
            elif self.cfg.reward_model_path:
                self._rm = EmbeddedRewardModel(self.cfg.reward_model_path)
            else:
                raise RuntimeError(
                    "the data has reward-model (style: model) prompts but neither "
                    "reward.reward_model_address nor reward.reward_model_path is set"
                )
        return self._rm

    def submit(self, records: Sequence[PromptRecord], responses: Sequence[str]) -> Future:
        return self.pool.submit(self.score, list(records), list(responses))

    def score(self, records: Sequence[PromptRecord], responses: Sequence[str]) -> list[Scored]:
        """One `Scored` per (record, response) pair, in order; never raises for service errors."""
        if len(records) != len(responses):
            raise ValueError(f"{len(records)} records but {len(responses)} responses")
        out: list[Scored | None] = [None] * len(records)
        rule, model = [], []
        for i, (rec, text) in enumerate(zip(records, responses, strict=True)):
            style = rec.reward_model.style
            if not check_format(text).ok:
                out[i] = Scored(self.fmt.penalty, False, False, style)
            elif style == "rule":
                rule.append(i)
            else:
                model.append(i)
        if rule:
            items = [
                VerifyItem(verifier_name(records[i]), responses[i], records[i].ground_truth)
                for i in rule
            ]
            try:
                results = self.verifier.verify(items)
            except Exception as e:  # a failing service excludes its samples, never the run
                log.error("verifier call failed for %d responses: %s", len(items), e)
                results = [(None, False, f"verifier call failed: {e}")] * len(items)
            for i, (reward, correct, error) in zip(rule, results, strict=True):
                if error:
                    out[i] = Scored(None, False, True, "rule", error)
                else:
                    out[i] = Scored(reward, correct, True, "rule")
        if model:
            items, ok = [], []
            for i in model:
                ref = records[i].extra_info.reference_response
                if not ref:
                    out[i] = Scored(None, False, True, "model", "no extra_info.reference_response")
                    continue
                prompt = [m.model_dump() for m in records[i].prompt]
                images = [im.model_dump() for im in records[i].images]
                items.append(CompareItem(prompt, images, responses[i], ref))
                ok.append(i)
            if items:
                rm = self.reward_model  # a missing RM is a config error: raise, don't exclude
                try:
                    probs = rm.compare(items)
                    errors: list[str | None] = [None] * len(items)
                except Exception as e:
                    log.error("reward model call failed for %d responses: %s", len(items), e)
                    probs, errors = (
                        [0.0] * len(items),
                        [f"reward model call failed: {e}"] * len(items),
                    )
                for i, p, err in zip(ok, probs, errors, strict=True):
                    out[i] = (
                        Scored(None, False, True, "model", err)
                        if err
                        else Scored(float(p), p > 0.5, True, "model")
                    )
        return [s for s in out if s is not None]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(self.verifier, SandboxVerifiers):
            self.verifier.close()
