"""The one config-file loader: TOML or YAML, keys spelled like the command-line flags."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable


class ConfigFileError(ValueError):
    """A config file that is missing, unreadable or names unknown options: stops a run before any work."""


def load_config_file(path, known: Iterable[str] | None = None) -> dict:
    """{option: value} with dashes turned into underscores; unknown options are an error when `known` is given."""
    p = Path(path)
    if not p.is_file():
        raise ConfigFileError(f"config file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigFileError(f"config file {p}: use .toml, .yaml or .yml")
    try:
        text = p.read_text()
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:
        raise ConfigFileError(f"config file {p}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {p}: expected a table of options, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if known is not None:
        unknown = set(data) - set(known)
        if unknown:
            raise ConfigFileError(f"config file {p}: unknown options {sorted(unknown)}")
    return data
