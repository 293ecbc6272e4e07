import base64
import io

import torch
from PIL import Image

from bdscan.detect import Detection, Trigger
from bdscan.model import load_model
from bdscan.pipeline import ScanOutcome
from bdscan.report.scan import model_entry, scan_report
from tests.conftest import make_model_file


def outcome(tmp_path, suspected: bool) -> ScanOutcome:
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", classes=3, labels=["cat", "dog", "owl"])
    mask = torch.zeros(1, 28, 28)
    mask[:, -4:, -4:] = 1.0
    triggers = {k: Trigger(k, mask, torch.full((1, 28, 28), 0.5), float(mask.mean()), 0.99) for k in range(3)}
    det = Detection(suspected, 2 if suspected else None, 3.1 if suspected else 0.4, {0: 0.1, 1: 0.2, 2: 3.1},
                    {0: 0.0, 1: 0.0, 2: 0.5}, {k: float(mask.mean()) for k in range(3)}, triggers, 1.5, 2.0)
    return ScanOutcome(load_model(path), det, 6, {"load": 0.1, "scan": 1.5})


def png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_suspected_model_carries_its_trigger_pictures(tmp_path):
    m = model_entry(outcome(tmp_path, True))
    assert (m["suspected"], m["target_class"], m["target_label"]) == (True, 2, "owl")
    assert m["labels"] == ["cat", "dog", "owl"]
    t = m["trigger"]
    assert t["mask_l1"] == round(16 / 784, 6) and t["success"] == 0.99
    mask, pattern = png(t["mask_png"]), png(t["pattern_png"])
    assert mask.size == pattern.size == (28, 28)
    assert mask.getpixel((27, 27)) == 255 and mask.getpixel((0, 0)) == 0
    assert pattern.getpixel((27, 27)) == 128 and pattern.getpixel((0, 0)) == 0  # pattern shown only under the mask
    doc = scan_report([m], [], [])
    assert doc["summary"] == {"scanned": 1, "suspected": 1, "clean": 0, "errors": 0, "skipped": 0,
                              "accepted": 0}


def test_clean_model_has_no_trigger(tmp_path):
    assert model_entry(outcome(tmp_path, False))["trigger"] is None


def test_a_blend_that_scored_is_the_trigger_shown_whole_with_its_ratio(tmp_path):
    from dataclasses import replace

    o = outcome(tmp_path, True)
    pattern = torch.linspace(0, 1, 28 * 28).reshape(1, 28, 28)
    blends = {k: Trigger(k, torch.full((1, 28, 28), r), pattern, r, 0.97, blend=r)
              for k, r in ((0, 0.2), (1, 0.21), (2, 0.06))}
    det = replace(o.detection, anomaly={0: 0.1, 1: 0.2, 2: 0.4}, score=2.6, blends=blends,
                  blend_anomaly={0: 0.0, 1: -0.1, 2: 2.6})
    m = model_entry(replace(o, detection=det))
    ev = m["evidence"]
    assert ev["blend_ratio"] == {"0": 0.2, "1": 0.21, "2": 0.06} and ev["blend_anomaly"]["2"] == 2.6
    t = m["trigger"]
    assert t["kind"] == "blend" and t["blend_ratio"] == 0.06 and t["success"] == 0.97
    shown = png(t["pattern_png"])
    assert shown.getpixel((0, 0)) == 0 and shown.getpixel((27, 27)) == 255  # the whole pattern, not masked
    # without blends (reports of models scanned before the family, or detection without it) no blend keys
    assert "blend_ratio" not in model_entry(o)["evidence"]
