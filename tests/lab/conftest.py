"""One trained lab model per attack, target and seed for the whole test run: the CI-sized checks that clean the same
kind of backdoor (target known, and detected) share its training (about a minute each)."""

from __future__ import annotations

import pytest

from bdscan.lab.zoo import make_lab_model


@pytest.fixture(scope="session")
def lab_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-models")

    def get(attack: str, target: int = 0, seed: int = 0):
        # make_lab_model reuses the file once it exists; bdscan never writes to its input
        return make_lab_model(root / f"{attack}-t{target}-s{seed}.safetensors", attack=attack, target=target, seed=seed,
                              epochs=3, train_limit=20000)

    return get
