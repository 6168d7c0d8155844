"""Merge a peft LoRA adapter into the backbone weights before truncation; report its hash and config."""

from __future__ import annotations

import json
from pathlib import Path

from unspoken.runtime.errors import InputError
from unspoken.runtime.manifest import sha256_file


def merge_lora(model, adapter_dir: Path):
    """Returns (merged model, adapter weights sha256, adapter config dict)."""
    from peft import PeftModel

    weights = adapter_dir / "adapter_model.safetensors"
    config = adapter_dir / "adapter_config.json"
    for f in (weights, config):
        if not f.is_file():
            raise InputError(f"LoRA folder {adapter_dir} lacks {f.name}")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    return merged, sha256_file(weights), json.loads(config.read_text())
