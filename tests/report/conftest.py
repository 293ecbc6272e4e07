"""Fixtures: report documents in the shapes the pipeline produces."""

from __future__ import annotations

import pytest

from tests.report.sample_docs import make_clean_doc, make_scan_doc


@pytest.fixture
def clean_doc() -> dict:
    return make_clean_doc()


@pytest.fixture
def scan_doc() -> dict:
    return make_scan_doc()
