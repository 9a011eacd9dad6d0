"""Health probe used by docker-compose.yml and `hybridrl up`: exit 0 when the URL is healthy.

``python -m services.healthcheck http://127.0.0.1:8000/healthz`` (any 2xx) or
``python -m services.healthcheck grpc://127.0.0.1:50051`` (the standard gRPC health service
reports SERVING). Standard library and grpcio only, so it runs in any of the images.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def check_http(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (our own URL)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_grpc(target: str, timeout_s: float) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def check(url: str, timeout_s: float = 3.0) -> bool:
    """True when the service behind ``url`` (http://, https:// or grpc://) answers healthy."""
    if url.startswith("grpc://"):
        return check_grpc(url.removeprefix("grpc://"), timeout_s)
    if url.startswith(("http://", "https://")):
        return check_http(url, timeout_s)
    raise ValueError(f"unsupported health URL {url!r}: use http://, https:// or grpc://")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m services.healthcheck URL", file=sys.stderr)
        return 2
    try:
        return 0 if check(argv[0]) else 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
