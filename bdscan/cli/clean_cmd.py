"""``bdscan clean``: remove a backdoor and write the cleaned model with its reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bdscan.cli import render
from bdscan.cli.app import app
from bdscan.cli.options import ArchOpt, MeanOpt, ReferenceOpt, SearchesOpt, StdOpt, parse_floats
from bdscan.report import OutputFormat



@app.command("clean")
def clean_cmd(
    model: Path = typer.Argument(..., help="Suspect model (.safetensors or .onnx); never modified.", show_default=False),
    samples: Path = typer.Option(..., "--samples", "-s", help="Clean images, DIR/<class>/*.png (10 per class is "
                                 "plenty)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder \\[default: MODEL's folder/"
                                       "<name>.bdscan]."),
    target_class: Optional[int] = typer.Option(None, "--target-class", "-t", help="The backdoor's target class, "
                                               "if known; a trigger toward it is synthesised."),
    trigger_samples: Optional[Path] = typer.Option(None, "--trigger-samples", help="Images carrying the real "
                                                   "trigger (flat folder, or DIR/<true class>/)."),
    forget: str = typer.Option("trigger", "--forget", help="'trigger' (unlearn the trigger) or 'class' (the "
                               "paper's no-trigger setting: unlearn the target class, then repair)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Layers to edit: 'late' (default), 'all', or "
                                         "comma-separated dotted names."),
    alpha: Optional[str] = typer.Option(None, "--alpha", help="Selection thresholds to try, comma-separated "
                                        "\\[default: 10,7,5,4,3,2.5,2,1.5]."),
    lam: Optional[str] = typer.Option(None, "--lambda", help="Dampening strengths to try \\[default: 1,0.5,0]."),
    no_repair: bool = typer.Option(False, "--no-repair", help="Keep the edit alone, skip the repair fine-tune."),
    epochs: int = typer.Option(10, "--epochs", min=0, help="Repair epochs (the best epoch is kept)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N; auto picks CUDA when present."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: CPU runs with one seed give identical outputs."),
    searches: Optional[int] = SearchesOpt,
    reference: Optional[Path] = ReferenceOpt,
    arch: Optional[str] = ArchOpt,
    mean: Optional[str] = MeanOpt,
    std: Optional[str] = StdOpt,
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="What to print on stdout "
                                     "(report files are always written)."),
    force: bool = typer.Option(False, "--force", help="Replace earlier outputs in --out (never the input)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Remove a backdoor: profile activations, dampen the units the trigger drives, repair, export.

    Writes into --out the cleaned model (input's format), its ONNX export and report.json, .md, .html.

    Exit codes:
    0  backdoor removed, or none found (then no model is written)
    1  the trigger still works after cleaning (reports written, no model)
    2  runtime error: unreadable or corrupt model or image, failed export
    4  usage error: bad flags, unknown architecture

    Environment:
    BDSCAN_CACHE_DIR  where proxy models trained on the samples are kept, so later scans on the same samples load them
                      (default ~/.cache/bdscan; off: train them every time)
    """
    from bdscan.errors import ExitCode, UsageError
    from bdscan.model.loader import model_format
    from bdscan.outputs import check_out_dir, default_out_dir, write_clean_outputs
    from bdscan.pipeline import TrustedModel, clean
    from bdscan.repair import RepairSettings
    from bdscan.settings import CleanSettings
    from bdscan.cli.settings_file import load_defaults, path_setting, searches_setting, threshold_setting

    if fmt is OutputFormat.sarif:
        raise UsageError("--format sarif is for 'bdscan scan'")
    if forget not in ("trigger", "class"):
        raise UsageError("--forget must be 'trigger' or 'class'")
    fmt_in = model_format(model)
    out = out or default_out_dir(model)
    check_out_dir(out, model, fmt_in, force)
    cfg = load_defaults()
    layer_sel = layers or cfg.get("layers", "late")
    searches = searches_setting(searches, cfg)  # detection's, when no --target-class or --trigger-samples
    settings = CleanSettings(
        target_class=target_class,
        trigger_samples=trigger_samples,
        forget=forget,
        alphas=tuple(parse_floats(alpha, "--alpha") or cfg.get("alphas", CleanSettings.alphas)),
        lambdas=tuple(parse_floats(lam, "--lambda") or cfg.get("lambdas", CleanSettings.lambdas)),
        layers=layer_sel if layer_sel in ("late", "all") else tuple(s.strip() for s in str(layer_sel).split(",")),
        repair=not no_repair and epochs > 0,
        repair_settings=RepairSettings(epochs=epochs),
        device=device,
        seed=seed,
        searches=searches,
        detect_threshold=threshold_setting(None, cfg),  # detection's bar, as scan reads it from the settings
    )
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    # detection's, when no --target-class or --trigger-samples; read only then
    detecting = target_class is None and trigger_samples is None and forget == "trigger"
    if reference is not None and not detecting:
        raise UsageError("--reference serves detection, which --target-class, --trigger-samples and --forget class "
                         "skip")
    reference = path_setting(reference, cfg, "reference")
    trusted = TrustedModel(reference, arch, mean_v, std_v, device) if reference is not None and detecting else None
    observer = render.RichObserver(quiet=quiet or fmt is OutputFormat.json)
    with observer.live():
        outcome = clean(model, samples, settings, arch=arch, mean=mean_v, std=std_v, reference=trusted,
                        observer=observer)
        doc = write_clean_outputs(outcome, out)
    if fmt is OutputFormat.json:
        render.print_json(doc)
    elif fmt in (OutputFormat.markdown, OutputFormat.html):
        from bdscan.report import render as render_doc

        render.out.print(render_doc(doc, fmt), markup=False, highlight=False)
    else:
        render.clean_summary(doc)
    for w in doc.get("warnings", []):
        render.err.print(f"bdscan: warning: {w}", markup=False, highlight=False)
    if outcome.removed is None:
        render.err.print("no backdoor found; nothing written")
        raise typer.Exit(ExitCode.OK)
    raise typer.Exit(ExitCode.OK if outcome.removed else ExitCode.FOUND)
