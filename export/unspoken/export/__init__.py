"""unspoken export side (torch): backbone truncation and ONNX export, feature extraction, head training, bundles."""

from .bundle import export_bundle
from .train_head import HeadConfig, train_head

__all__ = ["export_bundle", "train_head", "HeadConfig"]
