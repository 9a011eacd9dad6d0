"""``hybridrl verify``: run one verifier on one response, in this process or via the service."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer

app = typer.Typer(add_completion=False)


def _parse_json(flag: str, text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as e:
        typer.echo(f"error: {flag} is not valid JSON ({e}): {text[:200]!r}", err=True)
        raise typer.Exit(2) from None


@app.command("verify")
def verify_cmd(
    verifier: str = typer.Option(
        ..., "--verifier", "-v", help="verifier name (see GET /v1/verifiers)"
    ),
    response: str = typer.Option(
        ..., "--response", "-r", help="the response text; '-' reads stdin"
    ),
    reference: str | None = typer.Option(
        None, "--reference", help='the reference as JSON, e.g. \'{"answer": "1/2"}\''
    ),
    options: str | None = typer.Option(None, "--options", help="verifier options as a JSON object"),
    url: str | None = typer.Option(
        None, "--url", help="verify via a running service (e.g. http://127.0.0.1:8000)"
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="HYBRIDRL_API_KEY", help="Bearer key for --url"
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="HTTP timeout for --url, seconds"),
) -> None:
    """Verify one response and print the result as JSON (exit 2 on bad input)."""
    if response == "-":
        response = sys.stdin.read()
    ref = _parse_json("--reference", reference, None)
    opts = _parse_json("--options", options, {})
    if not isinstance(opts, dict):
        typer.echo("error: --options must be a JSON object", err=True)
        raise typer.Exit(2)
    if url:
        typer.echo(json.dumps(_via_service(url, api_key, timeout, verifier, response, ref, opts)))
        return

    from verifiers import registry
    from verifiers.schemas import VerifyResponse

    registry.names()  # import the verifiers before the clock starts
    t0 = time.perf_counter()
    try:
        result = registry.verify(verifier, response, ref, opts)
    except registry.UnknownVerifierError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    elapsed = round((time.perf_counter() - t0) * 1000, 3)
    out = VerifyResponse(**result.model_dump(), elapsed_ms=elapsed)
    typer.echo(json.dumps(out.model_dump(), default=str))


def _via_service(
    url: str,
    api_key: str | None,
    timeout: float,
    verifier: str,
    response: str,
    ref: Any,
    opts: dict,
) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"verifier": verifier, "response": response, "reference": ref, "options": opts}
    try:
        r = httpx.post(url.rstrip("/") + "/v1/verify", json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        typer.echo(f"error: cannot reach {url}: {e}", err=True)
        raise typer.Exit(1) from None
    try:
        payload = r.json()
    except ValueError:
        payload = {"error": r.text[:500]}
    if r.status_code != 200:
        typer.echo(f"error: HTTP {r.status_code}: {payload.get('error', payload)}", err=True)
        raise typer.Exit(2 if 400 <= r.status_code < 500 and r.status_code != 401 else 1)
    return payload
