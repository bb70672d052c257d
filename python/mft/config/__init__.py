"""Config: YAML recipes with `base:` inheritance, `--set` overrides and one strict schema."""

from mft.config.loader import dump_config, load_config
from mft.config.schema import Config

__all__ = ["Config", "load_config", "dump_config"]
