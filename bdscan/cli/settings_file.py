"""Defaults from ``[tool.bdscan]`` in ./pyproject.toml or ./.bdscan.toml (flags win)."""

from __future__ import annotations

from pathlib import Path

from bdscan.errors import UsageError
from bdscan.report.formats import OutputFormat

FORMATS = [f.value for f in OutputFormat]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(v) -> bool:
    return isinstance(v, str)


# each setting's type, checked when the file is read, so a wrong one is one usage error line, not a traceback or
# (for fail_on_detection = "no") a string taken as true
KINDS = {
    "samples": (_text, "a path"),
    "accepted": (_text, "a path"),
    "reference": (_text, "a path"),
    "arch": (_text, "an architecture name"),
    "device": (_text, "a device name (auto, cpu, cuda, cuda:N)"),
    "layers": (_text, "'late', 'all' or comma-separated layer names"),
    "format": (lambda v: v in FORMATS, f"one of {', '.join(FORMATS)}"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number of at least 0"),
    "searches": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number of at least 1"),
    "threshold": (_number, "a number"),
    "fail_on_detection": (lambda v: isinstance(v, bool), "true or false"),
    "alphas": (lambda v: isinstance(v, list) and bool(v) and all(map(_number, v)), "a non-empty list of numbers"),
    "lambdas": (lambda v: isinstance(v, list) and bool(v) and all(map(_number, v)), "a non-empty list of numbers"),
}
KNOWN = set(KINDS)


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
        for key, value in data.items():
            ok, kind = KINDS[key]
            if not ok(value):
                raise UsageError(f"{path}: {key} must be {kind}, not {value!r}")
        return dict(data)
    return {}


def threshold_setting(flag: float | None, cfg: dict) -> float:
    """--threshold, else the config's 'threshold', else 2.0 (Neural Cleanse's anomaly bar)."""
    return float(flag if flag is not None else cfg.get("threshold", 2.0))


def searches_setting(flag: int | None, cfg: dict) -> int:
    """--searches, else the config's 'searches', else 1; a whole number of at least 1."""
    if flag is not None and flag < 1:
        raise UsageError(f"--searches must be a whole number of at least 1, not {flag!r}")
    return flag if flag is not None else cfg.get("searches", 1)


def path_setting(flag: Path | None, cfg: dict, key: str) -> Path | None:
    """A file flag, else the config's ``key`` (a path string, checked by load_defaults), else None."""
    if flag is not None:
        return flag
    value = cfg.get(key)
    return Path(value) if value else None
