"""Model I/O: the only package that knows about safetensors and ONNX files."""

from bdscan.model.loader import SUPPORTED_SUFFIXES, LoadedModel, load_model, model_format
from bdscan.model.spec import ModelSpec
from bdscan.model.wrap import Normalized
from bdscan.model.save import provenance, write_model

__all__ = [
    "SUPPORTED_SUFFIXES", "LoadedModel", "ModelSpec", "Normalized", "load_model", "model_format",
    "provenance", "write_model",
]
