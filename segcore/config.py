"""The one config-file loader: TOML or YAML, keys spelled like the command-line flags."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable


class ConfigFileError(ValueError):
    """A config file that is missing, unreadable or names unknown options: stops a run before any work."""


MAX_CONFIG_BYTES = 1 << 20  # an options file is a few hundred bytes


def _yaml_without_aliases(text: str, p: Path):
    """yaml.safe_load, refusing anchors/aliases first: nested aliases expand a 1 KB file to gigabytes (the
    "billion laughs"), and an options file never needs them. The event scan itself expands nothing."""
    import yaml

    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, yaml.AliasEvent):
            raise ConfigFileError(f"config file {p}: YAML aliases (*name) are not allowed in an options file "
                                  f"(line {ev.start_mark.line + 1}); write the values out")
    return yaml.safe_load(text)


def load_config_file(path, known: Iterable[str] | None = None) -> dict:
    """{option: value} with dashes turned into underscores; unknown options are an error when `known` is given."""
    p = Path(path)
    if not p.is_file():
        raise ConfigFileError(f"config file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigFileError(f"config file {p}: use .toml, .yaml or .yml")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"config file {p}: {size} bytes; an options file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = p.read_text()
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = _yaml_without_aliases(text, p) or {}
    except ConfigFileError:
        raise
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
