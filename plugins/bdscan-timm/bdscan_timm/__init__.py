"""timm's classifiers as bdscan architectures: ``timm.<model name>``, built with random weights.

The listed models have their own entry points; ``resolve`` serves any other name timm knows through the
``bdscan.architecture_families`` entry point. timm is imported only when a model is built, because importing
it takes seconds and most bdscan runs need no timm model.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["builder", "resolve", "LISTED"]

# Vision transformers get dynamic_img_size so they run at the model file's input size, not only at 224;
# it changes no weight, so files saved from the plain timm model load unchanged.
LISTED: dict[str, dict] = {
    "resnet18": {},
    "resnet50": {},
    "mobilenetv3_small_100": {},
    "mobilenetv3_large_100": {},
    "efficientnet_b0": {},
    "convnext_atto": {},
    "regnetx_002": {},
    "vit_tiny_patch16_224": {"dynamic_img_size": True},
    "vit_small_patch16_224": {"dynamic_img_size": True},
}


def builder(model_name: str, **kwargs) -> Callable:
    """``build(num_classes)`` for one timm model; never downloads weights (``pretrained=False``)."""

    def build(num_classes: int):
        import timm

        return timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)

    build.__name__ = model_name
    build.__qualname__ = model_name
    return build


def resolve(name: str) -> Callable | None:
    """The builder for timm model ``name`` (the part after ``timm.``), or None when timm has no such model."""
    if name in LISTED:
        return builder(name, **LISTED[name])
    import timm

    return builder(name) if timm.is_model(name) else None


resnet18 = builder("resnet18", **LISTED["resnet18"])
resnet50 = builder("resnet50", **LISTED["resnet50"])
mobilenetv3_small_100 = builder("mobilenetv3_small_100", **LISTED["mobilenetv3_small_100"])
mobilenetv3_large_100 = builder("mobilenetv3_large_100", **LISTED["mobilenetv3_large_100"])
efficientnet_b0 = builder("efficientnet_b0", **LISTED["efficientnet_b0"])
convnext_atto = builder("convnext_atto", **LISTED["convnext_atto"])
regnetx_002 = builder("regnetx_002", **LISTED["regnetx_002"])
vit_tiny_patch16_224 = builder("vit_tiny_patch16_224", **LISTED["vit_tiny_patch16_224"])
vit_small_patch16_224 = builder("vit_small_patch16_224", **LISTED["vit_small_patch16_224"])
