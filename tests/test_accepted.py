"""Accepted findings (--accepted): reading the file, matching exact file and class, and how reports show them."""

import json
from pathlib import Path

import jsonschema
import pytest

from bdscan.accepted import load_accepted, mark_accepted
from bdscan.errors import UsageError
from bdscan.report import render
from bdscan.report.formats import OutputFormat
from bdscan.report.scan import failing, scan_report
from tests.report.sample_docs import make_scan_doc

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "assets" / "sarif-2.1.0.schema.json").read_text())
SHA = "ab" * 32  # the sample doc's model digest


def write(tmp_path, doc) -> Path:
    p = tmp_path / "accepted.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_reads_entries(tmp_path):
    p = write(tmp_path, {"accepted": [{"sha256": SHA.upper(), "target_class": 8, "reason": "natural Bag"},
                                      {"sha256": "cd" * 32, "target_class": 0}]})
    assert load_accepted(p) == {(SHA, 8): "natural Bag", ("cd" * 32, 0): ""}


@pytest.mark.parametrize("doc, words", [
    ("{not json", "cannot read accepted findings"),
    ({"findings": []}, 'expected {"accepted": [...]}'),
    ({"accepted": ["x"]}, "accepted[0]: expected an object"),
    ({"accepted": [{"sha256": "abc", "target_class": 1}]}, "sha256 must be 64 hex digits"),
    ({"accepted": [{"sha256": SHA, "target_class": True}]}, "target_class must be a class index"),
    ({"accepted": [{"sha256": SHA, "target_class": -1}]}, "target_class must be a class index"),
    ({"accepted": [{"sha256": SHA, "target_class": 1, "reason": 3}]}, "reason must be text"),
])
def test_bad_files_are_usage_errors(tmp_path, doc, words):
    with pytest.raises(UsageError) as err:
        load_accepted(write(tmp_path, doc))
    assert words in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_accepted(tmp_path / "nope.json")


def test_only_the_same_file_and_class_pass():
    doc = make_scan_doc()
    bad, clean = doc["models"]
    mark_accepted(doc["models"], {(SHA, 0): "reviewed"})
    assert bad["accepted"] == {"reason": "reviewed"} and clean["accepted"] is None  # a clean model is never marked
    mark_accepted(doc["models"], {(SHA, 8): "reviewed"})  # the same file flagged toward another class
    assert bad["accepted"] is None
    mark_accepted(doc["models"], {("cd" * 32, 0): "reviewed"})  # another file
    assert bad["accepted"] is None


def test_gate_and_reports_show_accepted(tmp_path):
    doc = make_scan_doc()
    mark_accepted(doc["models"], {(SHA, 0): "natural T-shirt route"})
    doc = {**doc, "summary": scan_report(doc["models"], doc["errors"], doc["skipped"])["summary"]}
    assert doc["summary"]["suspected"] == 1 and doc["summary"]["accepted"] == 1 and failing(doc) == 0
    md = render(doc, OutputFormat.markdown)
    assert "accepted by review" in md and "natural T-shirt route" in md and "❌ suspected" not in md
    sarif = json.loads(render(doc, OutputFormat.sarif))
    jsonschema.validate(sarif, SCHEMA)
    (res,) = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "BDSCAN001"]
    assert res["suppressions"] == [{"kind": "external", "status": "accepted",
                                    "justification": "natural T-shirt route"}]
    html = render(doc, OutputFormat.html)
    assert "accepted by review" in html and "natural T-shirt route" in html
    mark_accepted(doc["models"], {})
    doc["summary"] = scan_report(doc["models"], doc["errors"], doc["skipped"])["summary"]
    assert failing(doc) == 1 and "suppressions" not in json.loads(render(doc, OutputFormat.sarif))["runs"][0]["results"][0]
