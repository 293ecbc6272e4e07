"""``bdscan scan``: the CI gate. Is each model backdoored, toward which class, how sure."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bdscan.cli import render
from bdscan.cli.app import app
from bdscan.cli.options import ArchOpt, MeanOpt, ReferenceOpt, SearchesOpt, StdOpt, parse_floats
from bdscan.report import OutputFormat


def expand_models(paths: list[Path]) -> tuple[list[Path], list[dict]]:
    """Files as given; folders expanded to the model files inside. Unsupported files become 'skipped'."""
    from bdscan.model import SUPPORTED_SUFFIXES

    models, skipped = [], []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in SUPPORTED_SUFFIXES and q.is_file())
            if not found:
                skipped.append({"path": str(p), "reason": "folder holds no .safetensors or .onnx file"})
            models += found
        else:
            models.append(p)
    return models, skipped


@app.command("scan")
def scan_cmd(
    models: List[Path] = typer.Argument(..., help="Model files (.safetensors, .onnx) or folders of them.",
                                        show_default=False),
    samples: Optional[Path] = typer.Option(None, "--samples", "-s", help="Clean images, DIR/<class>/*.png "
                                           "(or 'samples' in \\[tool.bdscan])."),
    fmt: Optional[OutputFormat] = typer.Option(None, "--format", "-f", help="text, json, markdown, sarif, or html (needs -o) "
                                               "\\[default: text]."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Anomaly score above which a model is "
                                              "suspected \\[default: 2.0]."),
    fail_on_detection: Optional[bool] = typer.Option(None, "--fail-on-detection/--no-fail-on-detection",
                                                     help="Exit 1 when a model is suspected \\[default: on]."),
    accepted_file: Optional[Path] = typer.Option(None, "--accepted", help="JSON of reviewed findings (model "
                                                 "sha256 and target class) the gate lets pass; still reported "
                                                 "(or 'accepted' in \\[tool.bdscan])."),
    save_triggers: Optional[Path] = typer.Option(None, "--save-triggers", help="Folder for the synthesised "
                                                 "mask and pattern of each suspected model (PNG)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N \\[default: auto]."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Seed for the trigger search \\[default: 0]."),
    searches: Optional[int] = SearchesOpt,
    reference: Optional[Path] = ReferenceOpt,
    arch: Optional[str] = ArchOpt,
    mean: Optional[str] = MeanOpt,
    std: Optional[str] = StdOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Scan models for backdoors from clean samples alone.

    Exit codes:
    0  every model scanned and none suspected (or each suspected one accepted with --accepted)
    1  a backdoor is suspected
    2  a model could not be read
    3  nothing was scanned (no supported model among the inputs)
    4  usage error: bad flags, unknown architecture

    Environment:
    BDSCAN_CACHE_DIR  where proxy models trained on the samples are kept, so later scans on the same samples load them
                      (default ~/.cache/bdscan; off: train them every time)
    """
    from bdscan.accepted import load_accepted, mark_accepted
    from bdscan.cli.settings_file import load_defaults, path_setting, searches_setting, threshold_setting
    from bdscan.errors import ArchitectureError, BdscanError, ExitCode, UnsupportedModelError, UsageError
    from bdscan.fileio import atomic_write_text
    from bdscan.pipeline import TrustedModel, scan
    from bdscan.report import render as render_doc
    from bdscan.report.scan import failing, model_entry, scan_report

    cfg = load_defaults()
    fmt = fmt or OutputFormat(cfg.get("format", "text"))
    if fmt is OutputFormat.html and output is None:
        raise UsageError("--format html needs --output FILE")
    samples = path_setting(samples, cfg, "samples")
    if samples is None:
        raise UsageError("missing --samples DIR (or 'samples' in [tool.bdscan])")
    threshold = threshold_setting(threshold, cfg)
    fail = fail_on_detection if fail_on_detection is not None else cfg.get("fail_on_detection", True)
    device_name = device or str(cfg.get("device", "auto"))
    seed = seed if seed is not None else cfg.get("seed", 0)
    searches = searches_setting(searches, cfg)
    arch = arch or cfg.get("arch")
    accepted_file = path_setting(accepted_file, cfg, "accepted")
    reference = path_setting(reference, cfg, "reference")
    accepted = load_accepted(accepted_file) if accepted_file is not None else {}  # a bad file fails before scanning
    from bdscan.devices import resolve_device

    resolve_device(device_name)  # fail before any model is read
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    trusted = TrustedModel(reference, arch, mean_v, std_v, device_name) if reference is not None else None
    files, skipped = expand_models(models)
    entries, errors = [], []
    observer = render.RichObserver(quiet=quiet or fmt is not OutputFormat.text)
    with observer.live():
        for path in files:
            observer.message(f"scanning {path}")
            try:
                outcome = scan(path, samples, threshold=threshold, device=device_name, seed=seed,
                               searches=searches, arch=arch, mean=mean_v, std=std_v, reference=trusted,
                               observer=observer)
            except UnsupportedModelError as exc:
                skipped.append({"path": str(path), "reason": str(exc)})
                continue
            except UsageError as exc:
                if arch is not None or not isinstance(exc, ArchitectureError):
                    raise  # the user's own flag is wrong: stop
                skipped.append({"path": str(path), "reason": str(exc)})  # the file names an architecture we lack
                continue
            except BdscanError as exc:
                errors.append({"path": str(path), "error": str(exc), "exit_code": int(exc.exit_code)})
                continue
            trig = {}
            if save_triggers is not None and outcome.detection.suspected:
                from bdscan.triggers import save_trigger_pngs

                trig = save_trigger_pngs(outcome.detection.shown_trigger(outcome.detection.target), save_triggers,
                                         path.stem)
            entries.append(model_entry(outcome, trig))
    mark_accepted(entries, accepted)
    doc = scan_report(entries, errors, skipped)
    text = render_doc(doc, fmt) if fmt is not OutputFormat.text else None
    if output is not None:
        atomic_write_text(output, text if text is not None else render_doc(doc, OutputFormat.markdown))
    if fmt is OutputFormat.text:
        render.scan_summary(doc)
    elif output is None:
        render.out.file.write(text)
    for e in errors:
        render.err.print(f"bdscan: error: {e['error']}", markup=False, highlight=False)
    for s in skipped:
        render.err.print(f"bdscan: skipped {s['path']}: {s['reason']}", markup=False, highlight=False)
    if fail and failing(doc):
        raise typer.Exit(ExitCode.FOUND)
    if errors:
        raise typer.Exit(ExitCode.RUNTIME)
    if not entries:
        raise typer.Exit(ExitCode.NOTHING_SCANNED)
    raise typer.Exit(ExitCode.OK)
