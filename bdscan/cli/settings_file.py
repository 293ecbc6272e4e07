"""Defaults from ``[tool.bdscan]`` in ./pyproject.toml or ./.bdscan.toml (flags win)."""

from __future__ import annotations

from pathlib import Path

from bdscan.errors import UsageError

KNOWN = {"samples", "format", "device", "seed", "layers", "alphas", "lambdas", "threshold", "fail_on_detection",
         "arch", "accepted", "searches", "reference"}


def load_defaults(cwd: Path | None = None) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    cwd = cwd or Path.cwd()
    for path, table in ((cwd / ".bdscan.toml", None), (cwd / "pyproject.toml", ("tool", "bdscan"))):
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{path}: cannot read settings ({exc})") from None
        if table:
            for key in table:
                data = data.get(key, {}) if isinstance(data, dict) else {}
            if not data:
                continue
        if not isinstance(data, dict):
            raise UsageError(f"{path}: settings must be a table")
        unknown = sorted(set(data) - KNOWN)
        if unknown:
            raise UsageError(f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(KNOWN))}")
        return dict(data)
    return {}


def threshold_setting(flag: float | None, cfg: dict) -> float:
    """--threshold, else the config's 'threshold', else 2.0 (Neural Cleanse's anomaly bar)."""
    value = flag if flag is not None else cfg.get("threshold", 2.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"threshold must be a number, not {value!r}")
    return float(value)


def searches_setting(flag: int | None, cfg: dict) -> int:
    """--searches, else the config's 'searches', else 1; a whole number of at least 1."""
    n = flag if flag is not None else cfg.get("searches", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"--searches must be a whole number of at least 1, not {n!r}")
    return n


def path_setting(flag: Path | None, cfg: dict, key: str) -> Path | None:
    """A file flag, else the config's ``key`` (a path string), else None."""
    if flag is not None:
        return flag
    value = cfg.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{key} must be a path, not {value!r}")
    return Path(value)
