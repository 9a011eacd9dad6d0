"""deploy/: the Dockerfile copies only what exists, the manifests parse and point at real configs."""

from __future__ import annotations

import re

import yaml
from conftest import REPO_DIR

DEPLOY = REPO_DIR / "deploy"


def test_dockerfile_copies_existing_paths_and_has_both_stages():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS build$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS runtime$", text, re.M)
    assert "ARG TORCH_INDEX_URL" in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for src in sources:
                assert (REPO_DIR / src).exists(), f"Dockerfile copies missing {src}"


def test_every_python_package_is_in_the_image():
    text = (DEPLOY / "Dockerfile").read_text()
    for pkg in (
        "hybridrl",
        "verifiers",
        "services",
        "reward_model",
        "rl",
        "pretrain",
        "vlm",
        "synth",
    ):
        assert f"COPY {pkg} ./{pkg}" in text, pkg


def test_dockerignore_keeps_local_state_out():
    ignored = (REPO_DIR / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "runs", "data"):
        assert path in ignored


def test_kuberay_job_and_ray_cluster_parse():
    job = yaml.safe_load((DEPLOY / "kuberay" / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    config = job["spec"]["entrypoint"].split("--config ")[1].split()[0]
    assert (REPO_DIR / config).is_file(), config
    cluster = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    assert cluster["provider"]["type"] == "local"
    assert "job submit --address" in (DEPLOY / "ray" / "submit.sh").read_text()
