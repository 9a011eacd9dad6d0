"""Settings of the verifier service, from ``HYBRIDRL_*`` environment variables and CLI flags."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class VerifierServiceSettings(BaseSettings):
    """``hybridrl serve verifier``: every field is also ``HYBRIDRL_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDRL_", extra="ignore")

    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 exposes the service")
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(
        default_factory=_default_workers, ge=1, le=256, description="sandbox worker processes"
    )
    timeout_s: float = Field(3.0, gt=0, le=600, description="wall-clock limit of one verification")
    memory_mb: int = Field(2048, ge=256, description="RLIMIT_AS of each worker, in MiB")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db; unset: in-process LRU cache"
    )
    api_key: SecretStr | None = Field(
        None, description="when set, every route but /healthz needs Bearer auth"
    )
    cache_size: int = Field(100_000, ge=0, description="LRU entries (0: no in-process cache)")
    cache_ttl_s: int = Field(86_400, ge=1, description="lifetime of a cached result")
    extra_verifier_modules: str = Field(
        "", description="comma-separated modules whose import registers more verifiers"
    )
    isolate_network: bool = Field(True, description="give each worker an empty network namespace")
    debug_routes: bool = Field(False, description="serve /v1/debug/workers (worker pids)")
    access_log: bool = False
    log_level: str = "info"

    @field_validator("redis_url", "api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @property
    def extra_modules(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.extra_verifier_modules.split(",") if m.strip())
