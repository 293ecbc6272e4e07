import re

import pytest

from bdscan.report.html import render_html
from tests.report.sample_docs import make_bare_clean_doc, make_clean_doc, make_scan_doc

CLEAN_CHARTS = ["chart-asr", "chart-per-class", "chart-ratios", "chart-units", "chart-repair", "chart-timings"]


def charts(page: str) -> list[str]:
    return re.findall(r'<figure class="chart" id="([^"]+)"', page)


def assert_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    # nothing is fetched: every src/href is a data: URI or a fragment inside the page
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert ref.startswith(("data:", "#")), ref
    assert "@import" not in page and "url(http" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate ids across the inline SVGs"


@pytest.fixture(scope="module")
def clean_page() -> str:  # rendered once: matplotlib layout is the slow part
    return render_html(make_clean_doc())


def test_clean_report_has_verdict_first_then_every_chart_and_the_trigger(clean_page):
    page = clean_page
    assert_self_contained(page)
    assert page.index('id="verdict"') < page.index("<figure")
    assert re.search(r'<section id="verdict" class="verdict ok"><div class="title">Backdoor removed</div>', page)
    assert charts(page) == CLEAN_CHARTS
    assert page.count("<svg ") == len(CLEAN_CHARTS)
    assert page.count('src="data:image/png;base64,') == 5  # mask, pattern, three samples with the trigger
    assert "98.0% → 4.0%" in page and "17 in 2 layers" in page
    assert "α=5" in page  # the selection threshold is drawn on the ratio histograms
    assert "ab" * 32 in page and "ef" * 32 in page  # provenance: input and output sha256


def test_not_removed_is_marked_bad():
    doc = make_clean_doc("not_removed")
    doc.update(edit=None, repair=None, timings={})
    page = render_html(doc)
    assert '<section id="verdict" class="verdict bad"><div class="title">Backdoor NOT removed</div>' in page
    assert "No cleaned model was written" in page


def test_no_backdoor_found_renders_without_edit_repair_trigger_or_outputs():
    page = render_html(make_bare_clean_doc())
    assert_self_contained(page)
    assert '<div class="title">No backdoor found</div>' in page
    assert charts(page) == ["chart-anomaly", "chart-timings"]
    assert "data:image/png" not in page


def test_minimal_clean_doc_still_renders():
    page = render_html({"kind": "clean", "verdict": "no_backdoor_found"})
    assert '<div class="title">No backdoor found</div>' in page and charts(page) == []


def test_scan_report_per_model_evidence_and_trigger(scan_doc):
    page = render_html(scan_doc)
    assert_self_contained(page)
    assert '<section id="verdict" class="verdict bad"><div class="title">Backdoor suspected in 1 of 2 model(s)' in page
    assert charts(page) == ["chart-anomaly-0", "chart-anomaly-1", "chart-timings"]
    assert page.count('src="data:image/png;base64,') == 2  # mask and pattern of the suspected model only
    assert "cannot parse broken.onnx" in page and "pickle files are not loaded" in page
    assert "<td>100 images</td>" in page
    # the suspected model's activation excess, for review; none for the clean one
    assert 'id="excess-0"' in page and "put 4.3% of the last layer" in page and 'id="excess-1"' not in page


def test_scan_report_from_before_the_activation_excess_renders_without_it():
    doc = make_scan_doc()
    for m in doc["models"]:
        del m["evidence"]["activation_excess"]
    page = render_html(doc)
    assert 'id="excess-' not in page and "Backdoor suspected in 1 of 2" in page


def test_clean_scan_is_ok():
    doc = make_scan_doc()
    doc["models"] = doc["models"][1:]
    doc["errors"], doc["skipped"] = [], []
    doc["summary"] = {"scanned": 1, "suspected": 0, "clean": 1, "errors": 0, "skipped": 0}
    assert '<section id="verdict" class="verdict ok"><div class="title">No backdoor found</div>' in render_html(doc)


def test_saved_report_content_is_escaped(clean_doc):
    doc = make_bare_clean_doc()
    doc.update(detection=None, timings={}, trigger=clean_doc["trigger"])
    doc["model"]["path"] = "<script>alert(1)</script>.safetensors"
    doc["trigger"]["mask_png"] = 'AAAA" onerror="alert(1)'
    page = render_html(doc)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.safetensors" in page
    assert "onerror" not in page  # a value that is not base64 is dropped, not inlined
    assert page.count('src="data:image/png;base64,') == 4  # pattern and three samples remain


def test_rendering_is_deterministic(clean_page):
    assert render_html(make_clean_doc()) == clean_page


def test_names_from_model_files_are_plain_text_in_charts():
    doc = make_bare_clean_doc()
    doc["model"]["spec"]["labels"][0] = "$5 $bill <b>"  # '$…$' would be mathtext, '<b>' markup
    doc["timings"] = {"$x$": 1.0}
    page = render_html(doc)
    assert "$5 $bill &lt;b&gt;" in page and "<b>" not in page and "$x$" in page


def test_scan_time_chart_keeps_models_with_the_same_file_name_apart(scan_doc):
    scan_doc["models"][1]["path"] = "other/badnets-cnn.safetensors"
    page = render_html(scan_doc)
    chart = page[page.index('id="chart-timings"'):]
    assert "examples/models/badnets-cnn.safetensors" in chart and "other/badnets-cnn.safetensors" in chart


def test_scan_report_names_searches_that_flagged_without_a_verdict():
    doc = make_scan_doc()
    doc["models"][1]["evidence"]["searches"] = [
        {"seed": 0, "suspected": False, "target_class": None, "score": 1.5},
        {"seed": 1, "suspected": True, "target_class": 8, "score": 2.1}]
    page = render_html(doc)
    assert '<p id="searches-1">1 of 2 trigger searches flagged class 8; a verdict needs all 2.</p>' in page
    assert 'id="searches-0"' not in page


def test_scan_report_names_the_reference_model():
    doc = make_scan_doc()
    doc["models"][0]["evidence"]["reference"] = {"path": "<b>ref</b>.safetensors", "sha256": "cd" * 32}
    page = render_html(doc)
    assert '<p id="reference-0">scored against the reference model &lt;b&gt;ref&lt;/b&gt;.safetensors' in page
    assert 'id="reference-1"' not in page


def test_clean_report_names_the_reference_and_its_blind_spots():
    doc = make_bare_clean_doc()
    doc["detection"]["reference"] = {"path": "<i>r</i>.safetensors", "sha256": "cd" * 32, "blind_spots": {"3": 2.65}}
    page = render_html(doc)
    assert_self_contained(page)
    note = re.search(r'<p id="reference">([^<]*)</p>', page).group(1)
    assert note.startswith("scored against the reference model &lt;i&gt;r&lt;/i&gt;.safetensors")
    assert note.endswith("flags class 3 (2.65), so a backdoor toward it would not stand out: check the reference.")
    assert page.index('id="chart-anomaly"') < page.index('id="reference"')  # in the detection section
    assert 'id="reference"' not in render_html(make_bare_clean_doc())


def test_scan_report_shows_a_natural_route_in_its_chart_and_notes():
    doc = make_scan_doc()
    carried = {str(k): (9.71 if k == 8 else 0.0) for k in range(10)}
    doc["models"][1]["evidence"].update(natural={"8": 2.76}, carry=carried)
    page = render_html(doc)
    assert_self_contained(page)
    assert "natural route (its trigger carries): not flagged" in page
    assert re.search(r'<p id="natural-1">not flagged: class 8 \(2\.76; \+9\.7 nats\)', page)
    assert "natural route (its trigger carries)" not in render_html(make_scan_doc())


def test_clean_report_says_what_the_blend_search_found_when_its_blend_did_not_join():
    doc = make_clean_doc()
    searched = {"ratio": 0.21, "anomaly": 0.4, "threshold": 2.0, "joined": False}
    doc["trigger"]["blend_search"] = searched
    assert "mixes in 21.0% of a pattern" in render_html(doc) and "no blend was unlearned" in render_html(doc)
    doc["trigger"]["blend_search"] = {**searched, "joined": True}  # a blend that joined is named by blend_ratio
    assert "no blend was unlearned" not in render_html(doc)
