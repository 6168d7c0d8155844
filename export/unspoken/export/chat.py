"""Chat-template wrapping of a prompt template, for instruct backbones.

The backbone's own chat template renders one user turn holding a placeholder, with the generation prompt after it;
the text before the placeholder joins the template's prefix and the text after it goes before the seed cue, so the
seed cue opens the assistant's turn. The result is still a plain ``PromptTemplate`` (data, hashed, cacheable when
content-first), so the runtime needs nothing new.
"""

from __future__ import annotations

from dataclasses import replace

from unspoken.runtime.errors import InputError
from unspoken.runtime.template import PromptTemplate

_SLOT = "\u2063UNSPOKEN_SLOT\u2063"


def chat_wrapped(template: PromptTemplate, backbone) -> PromptTemplate:
    """``template`` inside one user turn of ``backbone``'s chat template (a ``LoadedBackbone``)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(backbone.resolved.hf_dir)
    if not getattr(tok, "chat_template", None):
        raise InputError(f"backbone {backbone.resolved.name} has no chat template; drop --chat")
    rendered = tok.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                       add_generation_prompt=True)
    before, sep, after = rendered.partition(_SLOT)
    if not sep:
        raise InputError(f"backbone {backbone.resolved.name}'s chat template drops the user message; drop --chat")
    bos = tok.bos_token
    if bos and tok.bos_token_id in backbone.prepend_ids and before.startswith(bos):
        before = before[len(bos):]  # the runtime prepends <bos> itself for this backbone
    # The user turn ends after the template's question; the seed cue starts the assistant's reply.
    suffix = template.suffix.rstrip("\n") + after
    return replace(template, prefix=before + template.prefix, suffix=suffix, name=f"{template.name}+chat")
