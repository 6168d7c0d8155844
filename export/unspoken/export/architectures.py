"""One table of per-architecture facts: where the decoder, its layers and its final norm live.

Everything architecture-specific that export needs is here, so adding a backbone family is one row, not branches
spread through the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from unspoken.runtime.errors import InputError


@dataclass(frozen=True)
class ArchFacts:
    decoder: str = "model"  # attribute of the *ForCausalLM holding the decoder stack
    layers: str = "layers"  # attribute of the decoder holding the ModuleList of blocks
    norm: str = "norm"  # attribute of the decoder holding the final norm (replaced by identity)
    per_layer_config: tuple[str, ...] = ()  # config lists indexed by layer, cut along with the layers
    # layer_types values whose state is recurrent (Mamba), not attention KV: the graph cannot carry them yet
    recurrent_layer_types: tuple[str, ...] = ()


ARCHITECTURES: dict[str, ArchFacts] = {
    "llama": ArchFacts(),
    "mistral": ArchFacts(),
    "qwen2": ArchFacts(per_layer_config=("layer_types",)),
    "qwen3": ArchFacts(per_layer_config=("layer_types",)),
    "gemma2": ArchFacts(per_layer_config=("layer_types",)),
    "gemma3_text": ArchFacts(per_layer_config=("layer_types",)),
    "phi3": ArchFacts(),
    "granite": ArchFacts(),
    "granitemoehybrid": ArchFacts(per_layer_config=("layer_types",), recurrent_layer_types=("linear_attention", "mamba")),
}


def arch_facts(model_type: str) -> ArchFacts:
    """Facts for a transformers ``model_type``; refuses unknown ones by listing the supported."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise InputError(
            f"architecture {model_type!r} is not supported for export; supported: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
