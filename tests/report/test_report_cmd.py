import json

from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.errors import ExitCode
from tests.report.sample_docs import make_bare_clean_doc

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def saved(tmp_path, doc, name="report.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_markdown_to_stdout_by_default(tmp_path, clean_doc):
    r = invoke("report", saved(tmp_path, clean_doc))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("## bdscan clean: `examples/models/badnets-cnn.safetensors`\n")


def test_html_to_file_explicit_and_from_suffix(tmp_path, scan_doc):
    r = invoke("report", saved(tmp_path, make_bare_clean_doc()), "--format", "html", "-o", tmp_path / "out.txt")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").startswith("<!doctype html>")
    r = invoke("report", saved(tmp_path, scan_doc, "scan.json"), "-o", tmp_path / "scan.html")
    assert r.exit_code == 0, r.output
    assert "Backdoor suspected in 1 of 2 model(s)" in (tmp_path / "scan.html").read_text(encoding="utf-8")
    r = invoke("report", tmp_path / "scan.json", "--format", "md", "-o", tmp_path / "scan.html")
    assert (tmp_path / "scan.html").read_text(encoding="utf-8").startswith("## bdscan scan\n")


def test_html_to_stdout_is_the_same_page(tmp_path):
    from bdscan.report.html import render_html

    doc = make_bare_clean_doc()
    r = invoke("report", saved(tmp_path, doc), "--format", "html")
    assert r.exit_code == 0, r.output
    assert r.stdout == render_html(doc)


def one_line_error(r, text):
    assert r.exit_code == ExitCode.RUNTIME, r.output
    assert r.output.count("\n") == 1 and r.output.startswith("bdscan: error: "), r.output
    assert text in r.output, r.output


def test_unreadable_reports_are_one_line_runtime_errors(tmp_path, clean_doc):
    one_line_error(invoke("report", tmp_path / "missing.json"), "missing.json: no such file")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    one_line_error(invoke("report", bad), "is not valid JSON (line 1, column 2")
    one_line_error(invoke("report", saved(tmp_path, [1, 2], "list.json")), "is not a bdscan report")
    one_line_error(invoke("report", saved(tmp_path, {"kind": "sarif"}, "k.json")), "is not a bdscan report")
    newer = dict(clean_doc, schema_version=99)
    one_line_error(invoke("report", saved(tmp_path, newer, "new.json")), "has report schema 99")
    broken = dict(clean_doc, before={"accuracy": "x"})
    one_line_error(invoke("report", saved(tmp_path, broken, "broken.json"), "--format", "md"),
                   "missing or has malformed report fields")
    assert not (tmp_path / "out.html").exists()


def test_bad_format_is_a_usage_error(tmp_path, clean_doc):
    r = invoke("report", saved(tmp_path, clean_doc), "--format", "pdf")
    assert r.exit_code == ExitCode.USAGE, r.output


def test_sarif_only_for_scan_reports(tmp_path, clean_doc):
    r = invoke("report", saved(tmp_path, clean_doc), "--format", "sarif")
    assert r.exit_code == ExitCode.RUNTIME and "scan reports only" in r.output


def test_sarif_names_the_reference_a_finding_was_scored_against(tmp_path):
    from tests.report.sample_docs import make_scan_doc

    doc = make_scan_doc()
    suspected = next(m for m in doc["models"] if m["suspected"])
    suspected["evidence"]["reference"] = {"path": "release-1.safetensors", "sha256": "ef" * 32, "mask_l1": {}}
    out = tmp_path / "out.sarif"
    r = invoke("report", saved(tmp_path, doc), "--format", "sarif", "-o", out)
    assert r.exit_code == ExitCode.OK, r.output
    props = json.loads(out.read_text())["runs"][0]["results"][0]["properties"]
    assert props["reference"] == {"path": "release-1.safetensors", "sha256": "ef" * 32, "blindSpots": []}


def test_sarif_names_the_classes_left_out_as_natural_routes(tmp_path):
    from tests.report.sample_docs import make_scan_doc

    doc = make_scan_doc()
    suspected = next(m for m in doc["models"] if m["suspected"])
    suspected["evidence"]["natural"] = {"8": 2.76}
    suspected["evidence"]["carry"] = {"8": 5.6, str(suspected["target_class"]): -0.4}
    out = tmp_path / "out.sarif"
    r = invoke("report", saved(tmp_path, doc), "--format", "sarif", "-o", out)
    assert r.exit_code == ExitCode.OK, r.output
    props = json.loads(out.read_text())["runs"][0]["results"][0]["properties"]
    assert props["naturalClasses"] == [{"class": 8, "score": 2.76, "carry": 5.6}]
    suspected["evidence"].pop("natural")
    r = invoke("report", saved(tmp_path, doc), "--format", "sarif", "-o", out)
    assert "naturalClasses" not in json.loads(out.read_text())["runs"][0]["results"][0]["properties"]
