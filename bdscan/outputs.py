"""Write clean's outputs all-or-nothing: everything is staged under temporary names, then renamed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bdscan.errors import OutputError
from bdscan.fileio import can_write_in, nearest_existing, sha256_bytes
from bdscan.model import provenance, write_model
from bdscan.pipeline import CleanOutcome
from bdscan.report.build import clean_report
from bdscan.report.formats import OutputFormat, render

REPORT_FILES = {"report.json": OutputFormat.json, "report.md": OutputFormat.markdown, "report.html": OutputFormat.html}


def output_names(model_path: Path, fmt: str) -> list[str]:
    names = [model_path.name]
    if fmt != "onnx":
        names.append(model_path.with_suffix(".onnx").name)
    return names + list(REPORT_FILES)


def default_out_dir(model_path: Path) -> Path:
    return model_path.parent / f"{model_path.stem}.bdscan"


def check_out_dir(out: Path, model_path: Path, fmt: str, force: bool) -> None:
    """Fail before any work when ``out`` cannot take the outputs (nothing is created here)."""
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder")
    names = output_names(model_path, fmt)
    if out.exists():
        if not can_write_in(out):
            raise OutputError(f"--out {out} is not writable")
        if out.resolve() == model_path.parent.resolve():
            raise OutputError(f"--out {out} is the input's folder and {model_path.name} would clash with the input; "
                              "choose another --out")
        clash = [n for n in names if (out / n).exists()]
        if clash and not force:
            raise OutputError(f"--out {out} already holds {clash[0]}; pass --force to replace earlier outputs")
    else:
        parent = nearest_existing(out)
        if not parent.is_dir():
            raise OutputError(f"cannot create --out {out}: {parent} is not a folder")
        if not can_write_in(parent):
            raise OutputError(f"cannot create --out {out}: {parent} is not writable")


def report_digest(doc: dict) -> str:
    core = {k: v for k, v in doc.items() if k not in ("outputs", "created", "timings")}
    return sha256_bytes(json.dumps(core, sort_keys=True).encode())


def write_clean_outputs(outcome: CleanOutcome, out: Path) -> dict:
    """Stage the cleaned model, its ONNX export and the reports in a temporary folder inside ``out``'s parent,
    then move them into ``out``. Returns the final report document."""
    loaded = outcome.loaded
    doc = clean_report(outcome)
    if outcome.module is None:  # nothing to write when no backdoor was found
        return doc
    ship_model = bool(outcome.removed)  # a model whose trigger still works is never written as 'cleaned'
    out = out.expanduser()
    # --force replaces earlier outputs: a run that writes no model removes an earlier run's model, which beside
    # this run's "not removed" report would read as its cleaned model (check_out_dir keeps the input elsewhere)
    stale = [] if ship_model else [out / n for n in output_names(loaded.path, loaded.spec.format)
                                   if n not in REPORT_FILES and (out / n).is_file()]
    if stale:
        doc["warnings"].append(f"removed {', '.join(p.name for p in stale)} from {out}: an earlier run's model, "
                               "and this run wrote none")
    digest = report_digest(doc)
    meta = provenance(
        loaded.sha256, digest, bdscan_cleaned="true", bdscan_mode=outcome.mode, bdscan_target=str(outcome.target),
        bdscan_units_edited=str(doc["edit"]["total_units"] if doc["edit"] else 0),
    )
    top_created = None if out.exists() else _first_missing(out)  # removed again if anything fails
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    stage = Path(tempfile.mkdtemp(prefix=".bdscan-", suffix=".partial", dir=out))
    try:
        spec = loaded.spec
        fmt = spec.format
        module = outcome.module.cpu().eval()
        files = []
        main = stage / loaded.path.name
        if ship_model:
            files.append((write_model(module, spec, fmt, main, meta, outcome.val_inputs, outcome.device), main))
        if ship_model and fmt != "onnx":
            onnx_path = stage / loaded.path.with_suffix(".onnx").name
            files.append((write_model(module, spec.with_(format="onnx"), "onnx", onnx_path, meta,
                                      outcome.val_inputs, outcome.device), onnx_path))
        doc["outputs"] = [
            {"path": str(out / p.name), "format": info["format"], "sha256": _sha(p),
             "onnx_max_abs_diff": info["max_abs_diff"], "onnx_provider": info["provider"]}
            for info, p in files
        ]
        doc["report_digest"] = digest
        for name, fmt_ in REPORT_FILES.items():
            (stage / name).write_text(render(doc, fmt_), encoding="utf-8")
        for p in sorted(stage.iterdir()):
            os.replace(p, out / p.name)
        for p in stale:
            p.unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if top_created is not None:
            shutil.rmtree(top_created, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    return doc


def _first_missing(path: Path) -> Path:
    """The outermost folder that ``mkdir(parents=True)`` would create for ``path``."""
    path = path.absolute()
    while not path.parent.exists():
        path = path.parent
    return path


def _sha(path: Path) -> str:
    from bdscan.fileio import sha256_file

    return sha256_file(path)
