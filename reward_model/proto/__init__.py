"""gRPC stubs of ``reward_model.proto``, generated from the .proto file, never committed.

``make setup`` runs protoc after installing; when the stubs are missing or older than the
.proto (a fresh clone, an edited proto), `load()` generates them on first use: into this
folder when it is writable, else into a user cache folder added to this package's path.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("reward_model.proto")
_STUBS = ("reward_model_pb2.py", "reward_model_pb2_grpc.py")


def _fresh(folder: Path) -> bool:
    proto_mtime = PROTO.stat().st_mtime
    return all(
        (folder / name).is_file() and (folder / name).stat().st_mtime >= proto_mtime
        for name in _STUBS
    )


def generate(out_root: Path) -> Path:
    """Run protoc on the .proto; stubs land in ``out_root/reward_model/proto``. Returns that folder."""
    from grpc_tools import protoc

    # -I at the folder holding the `reward_model` package makes the generated grpc module
    # import `reward_model.proto.reward_model_pb2`, not a top-level `reward_model_pb2`.
    package_root = PROTO.parent.parent.parent
    target = out_root / "reward_model" / "proto"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{package_root}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(PROTO),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
        # os.replace is atomic: a concurrent importer sees the old file or the new one
        for name in _STUBS:
            os.replace(Path(tmp) / "reward_model" / "proto" / name, target / name)
    return target


def _cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hybridrl" / "proto"


def load() -> tuple[ModuleType, ModuleType]:
    """The generated ``(reward_model_pb2, reward_model_pb2_grpc)`` modules, generating if needed."""
    here = PROTO.parent
    if not _fresh(here):
        if os.access(here, os.W_OK):
            generate(here.parent.parent)
        else:
            cached = _cache_root() / "reward_model" / "proto"
            if not _fresh(cached):
                generate(_cache_root())
            if str(cached) not in __path__:
                __path__.append(str(cached))
    pb2 = importlib.import_module(f"{__name__}.reward_model_pb2")
    pb2_grpc = importlib.import_module(f"{__name__}.reward_model_pb2_grpc")
    return pb2, pb2_grpc


if __name__ == "__main__":  # python -m reward_model.proto: generate now
    folder = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO.parent.parent.parent)
    print(f"generated {', '.join(_STUBS)} in {folder}")
