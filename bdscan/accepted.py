"""Findings a person has reviewed and accepted, so a CI gate does not fail on them again.

An accepted finding names one exact model file (its sha256) and the class it was flagged toward. A changed file, or
the same file flagged toward another class, is a new finding: the gate fails on it as before. The file::

    {"accepted": [{"sha256": "<64 hex digits>", "target_class": 8, "reason": "natural Bag route, reviewed"}]}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bdscan.errors import UsageError

_SHA = re.compile(r"[0-9a-f]{64}")


def load_accepted(path: Path) -> dict[tuple[str, int], str]:
    """(sha256, target class) -> reason, from an accepted-findings file; UsageError names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: accepted-findings file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read accepted findings ({exc})") from None
    items = doc.get("accepted") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise UsageError(f"{path}: expected {{\"accepted\": [...]}}")
    out: dict[tuple[str, int], str] = {}
    for i, item in enumerate(items):
        where = f"{path}: accepted[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object with sha256 and target_class")
        sha, k, reason = item.get("sha256"), item.get("target_class"), item.get("reason", "")
        if not isinstance(sha, str) or not _SHA.fullmatch(sha.lower()):
            raise UsageError(f"{where}: sha256 must be 64 hex digits (the model file's, as reports give it)")
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise UsageError(f"{where}: target_class must be a class index (0 or more)")
        if not isinstance(reason, str):
            raise UsageError(f"{where}: reason must be text")
        out[(sha.lower(), k)] = reason
    return out


def mark_accepted(entries: list[dict], accepted: dict[tuple[str, int], str]) -> None:
    """Set each scan entry's ``accepted``: {"reason": ...} where a suspected model's file and class were accepted,
    else None. The entry stays suspected: the finding is still reported, only the gate lets it pass."""
    for m in entries:
        key = (str(m.get("sha256", "")).lower(), m.get("target_class"))
        m["accepted"] = {"reason": accepted[key]} if m.get("suspected") and key in accepted else None
