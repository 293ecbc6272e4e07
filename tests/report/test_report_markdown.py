from bdscan.report.markdown import code, render_markdown
from tests.report.sample_docs import make_bare_clean_doc, make_clean_doc, make_scan_doc


def test_clean_summary_has_verdict_key_numbers_units_time_and_hashes(clean_doc):
    md = render_markdown(clean_doc)
    lines = md.splitlines()
    assert lines[0] == "## bdscan clean: `examples/models/badnets-cnn.safetensors`"
    assert lines[2] == "✅ **Backdoor removed**"
    assert "| attack success rate (n=27 triggered images) | 98.0% | **4.0%** |" in lines
    assert "| clean accuracy (n=30 held-out images) | 86.0% | 83.0% |" in lines
    assert "- Units edited: **17** (`features.3` 5, `classifier.1` 12), threshold α=5" in lines
    assert "- Repair: kept epoch 2 (2 run)" in lines
    assert any(line.startswith("- Time: **7.5 s** (load 0.5 s, synthesise trigger 3.2 s") for line in lines)
    assert f"| `out/badnets-cnn.onnx` | onnx | `{'ef' * 32}` |" in lines
    assert len(lines) < 60
    assert md.endswith("\n")


def test_not_removed_and_no_backdoor_found():
    assert "❌ **Backdoor NOT removed**" in render_markdown(make_clean_doc("not_removed"))
    md = render_markdown(make_bare_clean_doc())
    assert "✅ **No backdoor found**: nothing was changed" in md
    assert "- Anomaly score 1.20 ≤ threshold 2" in md
    assert "before | after" not in md and "Units edited" not in md


def test_samples_dict_is_summarised(clean_doc):
    clean_doc["samples"] = {"path": "s", "images": 100, "held_in": 70, "held_out": 30, "classes": list(range(10))}
    assert ("- Samples: `s` (100 images; 70 used to edit and repair, 30 held out to measure; 10 classes)"
            in render_markdown(clean_doc).splitlines())


def test_scan_summary():
    md = render_markdown(make_scan_doc())
    lines = md.splitlines()
    assert lines[2] == ("❌ **Backdoor suspected**: 2 model(s) scanned, **1 suspected**, 1 clean, 1 error(s), "
                        "1 skipped.")
    assert "| `examples/models/badnets-cnn.safetensors` | ❌ suspected | 0 (T-shirt/top) | 3.40 / 2 | 4.2 s |" in lines
    assert "- ⚠️ `broken.onnx`: cannot parse broken.onnx" in lines
    assert "- skipped `weights.pt`: pickle files are not loaded" in lines


def test_paths_cannot_break_a_table_row():
    assert code("a|b`c") == "`a\\|b'c`"


def test_searches_that_flagged_without_a_verdict_are_named():
    doc = make_scan_doc()
    clean = doc["models"][1]
    clean["evidence"]["searches"] = [{"seed": 0, "suspected": True, "target_class": 8, "score": 2.16},
                                     {"seed": 1, "suspected": False, "target_class": None, "score": 1.96},
                                     {"seed": 2, "suspected": True, "target_class": 8, "score": 2.16}]
    note = f"- {code(clean['path'])}: 2 of 3 trigger searches flagged class 8; a verdict needs all 3"
    assert note in render_markdown(doc).splitlines()
    clean["evidence"]["searches"][0]["suspected"] = clean["evidence"]["searches"][2]["suspected"] = False
    assert "trigger searches" not in render_markdown(doc)  # none flagged: nothing to say


def test_a_reference_model_is_named():
    doc = make_scan_doc()
    bad = doc["models"][0]
    bad["evidence"]["reference"] = {"path": "models/release-1.safetensors", "sha256": "ab" * 32,
                                    "mask_l1": {"0": 0.05}, "feature_shift": {"0": 1.1}}
    note = (f"- {code(bad['path'])}: scored against the reference model models/release-1.safetensors (sha256 "
            f"{'ab' * 8}…): each class's mask size and feature shift over the reference's own")
    assert note in render_markdown(doc).splitlines()
    bad["evidence"]["reference"]["blind_spots"] = {"8": 2.21, "3": 2.5}  # the reference's own flags
    assert (note + "; the reference's own search flags classes 3 (2.50), 8 (2.21), so a backdoor toward them would "
            "not stand out: check the reference") in render_markdown(doc).splitlines()
    del bad["evidence"]["reference"]
    assert "reference model" not in render_markdown(doc)


def test_clean_report_names_the_reference_its_blind_spots_and_flagging_searches():
    """clean's detection against a reference, with searches that flagged short of a verdict: both qualify its
    "no backdoor found", as in scan's report."""
    doc = make_bare_clean_doc()
    doc["detection"]["reference"] = {"path": "release.safetensors", "sha256": "ab" * 32, "blind_spots": {"3": 2.65}}
    doc["detection"]["searches"] = [{"seed": 0, "suspected": True, "target_class": 8, "score": 2.2},
                                    {"seed": 1, "suspected": False, "target_class": None, "score": 1.2}]
    lines = render_markdown(doc).splitlines()
    assert (f"- Reference: scored against the reference model release.safetensors (sha256 {'ab' * 8}…): each "
            "class's mask size and feature shift over the reference's own; the reference's own search flags class "
            "3 (2.65), so a backdoor toward it would not stand out: check the reference") in lines
    assert "- Searches: 1 of 2 trigger searches flagged class 8; a verdict needs all 2" in lines
    assert "reference" not in render_markdown(make_bare_clean_doc())


def test_a_class_left_unflagged_as_a_natural_route_is_named():
    doc = make_scan_doc()
    clean = doc["models"][1]
    clean["evidence"].update(natural={"8": 2.76}, carry={str(k): (9.71 if k == 8 else 0.1 * k) for k in range(10)})
    assert (f"- {code(clean['path'])}: not flagged: class 8 (2.76; +9.7 nats) over the threshold, but its trigger "
            "carries to models trained on the samples alone (a natural route to the class, not a shortcut only this "
            "model learned)") in render_markdown(doc).splitlines()
    bare = make_bare_clean_doc()
    bare["detection"].update(natural={"8": 2.5, "3": 2.1}, carry={"8": 6.0, "3": 2.5})
    assert ("- Natural: not flagged: classes 3 (2.10; +2.5 nats), 8 (2.50; +6.0 nats) over the threshold, but their "
            "triggers carry to models trained on the samples alone (a natural route to the class, not a shortcut only "
            "this model learned)") in render_markdown(bare).splitlines()
