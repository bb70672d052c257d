"""Config loading: base inheritance, --set overrides, strict schema errors."""

import os

import pytest
import yaml

from mft.config import dump_config, load_config
from mft.errors import ConfigError

MINIMAL = {"run": {"output_dir": "out"}, "tokenizer": {"path": "tok.json"}, "data": {"prefix": "d"}}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_base_inheritance_merges_sections_key_by_key(tmp_path):
    write(tmp_path, "base.yaml", {**MINIMAL, "train": {"steps": 10, "optimizer": {"lr": 0.1, "eps": 1e-6}}})
    child = write(tmp_path, "child.yaml", {"base": "base.yaml", "train": {"optimizer": {"lr": 0.5}}})
    cfg = load_config(child)
    assert cfg.train.steps == 10
    assert cfg.train.optimizer.lr == 0.5
    assert cfg.train.optimizer.eps == 1e-6


def test_set_overrides_are_typed(tmp_path):
    path = write(tmp_path, "c.yaml", MINIMAL)
    cfg = load_config(
        path,
        ["train.steps=7", "train.optimizer.betas=[0.8, 0.9]", "model.fused_rmsnorm=true", "train.clip_grad_norm=null", "train.optimizer.lr=1"],
    )
    assert cfg.train.steps == 7
    assert cfg.train.optimizer.betas == [0.8, 0.9]
    assert cfg.model.fused_rmsnorm is True
    assert cfg.train.clip_grad_norm is None
    assert cfg.train.optimizer.lr == 1.0 and isinstance(cfg.train.optimizer.lr, float)


def test_unknown_key_names_file_and_suggests(tmp_path):
    write(tmp_path, "base.yaml", MINIMAL)
    child = write(tmp_path, "child.yaml", {"base": "base.yaml", "train": {"stpes": 3}})
    with pytest.raises(ConfigError) as e:
        load_config(child)
    msg = str(e.value)
    assert "child.yaml" in msg and "train.stpes" in msg and "did you mean 'train.steps'" in msg


def test_unknown_override_key_names_the_flag(tmp_path):
    path = write(tmp_path, "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match=r"--set model.hiden_size: unknown key 'model.hiden_size'; did you mean 'model.hidden_size'"):
        load_config(path, ["model.hiden_size=3"])


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, "c.yaml", {**MINIMAL, "train": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"c.yaml: key 'train.steps' must be an integer, got 'many'"):
        load_config(path)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "c.yaml", {"run": {"output_dir": "o"}, "tokenizer": {"path": "t"}})
    with pytest.raises(ConfigError, match=r"missing required key 'data'"):
        load_config(path)
    path = write(tmp_path, "d.yaml", {"run": {}, "tokenizer": {"path": "t"}, "data": {"prefix": "p"}})
    with pytest.raises(ConfigError, match=r"missing required key 'run.output_dir'"):
        load_config(path)


def test_bad_choice_suggests_nearest(tmp_path):
    path = write(tmp_path, "c.yaml", {**MINIMAL, "train": {"lr_schedule": {"name": "cosin"}}})
    with pytest.raises(ConfigError, match=r"must be one of constant, linear, cosine, cosine_restarts, .*, got 'cosin'; did you mean 'cosine'"):
        load_config(path)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    path = write(tmp_path, "bad.yaml", "run:\n  output_dir: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_config(path)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", {"base": "b.yaml"})
    b = write(tmp_path, "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(b)


def test_resolved_config_round_trips(tmp_path):
    path = write(tmp_path, "c.yaml", {**MINIMAL, "model": {"hidden_size": 32}})
    cfg = load_config(path, ["train.steps=3"])
    out = str(tmp_path / "resolved.yaml")
    dump_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert not os.path.exists(out + ".tmp")


def test_shipped_recipes_validate():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    found = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".yaml"):
                load_config(os.path.join(dirpath, f))
                found += 1
    assert found >= 1
