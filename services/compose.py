"""Read `docker-compose.yml` the way Compose does, for the local launcher (`hybridrl up`).

Pure functions: variable interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?message}``, ``$$``), YAML merge keys, the command/environment/healthcheck/depends_on
fields the launcher needs, and the start order. tests/test_launcher.py holds the result
against the real Compose implementation's ``config`` output.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(ValueError):
    """The compose file cannot be used; the message names the service and field."""


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> str:
    """Substitute variables in one string as Compose does."""

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else interpolate(arg, env, where)
        if op == "-":
            return value if value is not None else interpolate(arg, env, where)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise ComposeError(f"{where}: required variable {name} is missing: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_tree(x, env, where) for x in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, f"{where}.{k}") for k, v in node.items()}
    return node


@dataclass(frozen=True)
class Healthcheck:
    test: list[str]  # argv to run; empty: no check
    interval_s: float = 5.0
    timeout_s: float = 5.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: dict[str, str] = field(default_factory=dict)  # name -> condition
    healthcheck: Healthcheck | None = None
    image: str | None = None


def parse_duration(value: Any, where: str) -> float:
    """Compose durations: ``1m30s``, ``500ms``, ``2s``, or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    if not parts or "".join(a + b for a, b in parts) != str(value).strip():
        raise ComposeError(f"{where}: {value!r} is not a duration like 2s or 1m30s")
    return sum(float(n) * units[u] for n, u in parts)


def _argv(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(x, str | int | float) for x in value):
        return [str(x) for x in value]
    raise ComposeError(f"{where}: must be a string or a list of strings")


def _environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        out = {}
        for item in value:
            key, _, val = str(item).partition("=")
            out[key] = val
        return out
    raise ComposeError(f"{where}: must be a mapping or a list of KEY=VALUE")


def _healthcheck(value: Any, where: str) -> Healthcheck | None:
    if not value or value.get("disable"):
        return None
    test = value.get("test")
    if isinstance(test, str):
        argv = ["sh", "-c", test]
    elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE"):
        if test[0] == "NONE":
            return None
        argv = [str(x) for x in test[1:]] if test[0] == "CMD" else ["sh", "-c", str(test[1])]
    else:
        raise ComposeError(f"{where}.test: must be a string or a list starting with CMD/CMD-SHELL")
    return Healthcheck(
        test=argv,
        interval_s=parse_duration(value.get("interval", "30s"), f"{where}.interval"),
        timeout_s=parse_duration(value.get("timeout", "30s"), f"{where}.timeout"),
        retries=int(value.get("retries", 3)),
        start_period_s=parse_duration(value.get("start_period", "0s"), f"{where}.start_period"),
    )


def _depends_on(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(x): "service_started" for x in value}
    if isinstance(value, dict):
        return {str(k): (v or {}).get("condition", "service_started") for k, v in value.items()}
    raise ComposeError(f"{where}: must be a list or a mapping")


def load(path: str | Path, env: Mapping[str, str]) -> dict[str, Service]:
    """Parse and interpolate a compose file into `Service`s (keyed by name, file order)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ComposeError(f"{path} does not exist") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise ComposeError(f"{path} has no services mapping")
    services: dict[str, Service] = {}
    for name, spec in raw["services"].items():
        where = f"services.{name}"
        if not isinstance(spec, dict):
            raise ComposeError(f"{where}: must be a mapping")
        spec = _interpolate_tree(spec, env, where)
        services[name] = Service(
            name=name,
            command=_argv(spec.get("command"), f"{where}.command"),
            environment=_environment(spec.get("environment"), f"{where}.environment"),
            depends_on=_depends_on(spec.get("depends_on"), f"{where}.depends_on"),
            healthcheck=_healthcheck(spec.get("healthcheck"), f"{where}.healthcheck"),
            image=spec.get("image"),
        )
    for s in services.values():
        for dep in s.depends_on:
            if dep not in services:
                raise ComposeError(f"services.{s.name}.depends_on: unknown service {dep!r}")
    return services


def start_order(services: Mapping[str, Service], wanted: list[str] | None = None) -> list[str]:
    """Names to start, dependencies first (file order among equals); ``wanted`` adds its deps."""
    if wanted:
        unknown = [w for w in wanted if w not in services]
        if unknown:
            raise ComposeError(
                f"unknown service(s) {', '.join(unknown)}; known: {', '.join(services)}"
            )
    roots = list(wanted or services)
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"dependency cycle: {' -> '.join((*chain, name))}")
        visiting.add(name)
        for dep in services[name].depends_on:
            visit(dep, (*chain, name))
        visiting.discard(name)
        order.append(name)

    for r in roots:
        visit(r, ())
    return order
