import pytest
from pydantic import BaseModel, ConfigDict

from hybridrl.config import ConfigError, dump_config, load_config


class Opt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 1e-3
    betas: list[float] = [0.9, 0.95]


class Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "run"
    steps: int = 10
    opt: Opt = Opt()


def test_defaults_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 20\nopt:\n  lr: 0.01\n")
    cfg = load_config(Cfg, f, ["opt.lr=1e-5", "name=x", "opt.betas=[0.8, 0.9]"])
    assert (cfg.steps, cfg.opt.lr, cfg.name, cfg.opt.betas) == (20, 1e-5, "x", [0.8, 0.9])
    assert load_config(Cfg, None, []).steps == 10
    assert "lr: 1.0e-05" in dump_config(cfg, tmp_path / "out.yaml")
    assert (tmp_path / "out.yaml").read_text().startswith("name: x")


def test_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="opt.lr"):
        load_config(Cfg, None, ["opt.lr=fast"])
    with pytest.raises(ConfigError, match="opt.nope"):
        load_config(Cfg, None, ["opt.nope=1"])
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(Cfg, None, ["steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)
