"""One trained lab model per attack, target and seed for the whole test run: the CI-sized checks that clean the same
kind of backdoor (target known, and detected) share its training (about a minute each)."""

from __future__ import annotations

import os

import pytest

from bdscan.lab.fmnist import DEFAULT_ROOT
from bdscan.lab.zoo import make_lab_model

# Fashion-MNIST comes from a Debian package; without it the lab checks skip, except in CI, where they fail instead
needs_fmnist = pytest.mark.skipif(
    not (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").exists() and not os.environ.get("CI"),
    reason="needs the Debian package dataset-fashion-mnist (.ci/system-deps); CI never skips")


@pytest.fixture(scope="session")
def lab_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-models")

    def get(attack: str, target: int = 0, seed: int = 0):
        # make_lab_model reuses the file once it exists; bdscan never writes to its input
        return make_lab_model(root / f"{attack}-t{target}-s{seed}.safetensors", attack=attack, target=target, seed=seed,
                              epochs=3, train_limit=20000)

    return get
