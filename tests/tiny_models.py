"""Tiny random-weight backbones and a tiny byte-level BPE tokenizer, built on the fly (no hub, seconds)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "I used to hate this product, but honestly now I love it.",
    "Criterion: The writer currently likes the product. Assessment: yes no",
    "Text: Does the text meet the criterion? Assessment:",
    "def add(a, b):\n    return a + b  # code",
    "Ünïcödé façade naïve — emoji 🎉🔥 and 中文 and русский",
    "<|im_start|>user\nhello<|im_end|>",
] * 20


def make_tokenizer(folder: Path, *, bos: bool, vocab_size: int = 400):
    """A byte-level BPE tokenizer saved as an HF fast tokenizer; with ``bos`` it prepends <bos> like Gemma."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(folder)
    return fast


ARCHITECTURES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "granite", "granitemoehybrid"]


def tiny_config(arch: str, vocab_size: int, layers: int = 4):
    """A few-thousand-parameter config of ``arch``; sliding windows are tiny so short prompts exercise them."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    alternating = (["sliding_attention", "sliding_attention", "full_attention"] * layers)[:layers]
    if arch == "llama":
        return tf.LlamaConfig(**common, head_dim=16, tie_word_embeddings=True)
    if arch == "mistral":
        return tf.MistralConfig(**common, head_dim=16, sliding_window=8)
    if arch == "qwen2":
        return tf.Qwen2Config(**common)
    if arch == "qwen3":
        return tf.Qwen3Config(**common, head_dim=16)
    if arch == "gemma2":
        return tf.Gemma2Config(**common, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                               layer_types=(["sliding_attention", "full_attention"] * layers)[:layers])
    if arch == "gemma3":
        return tf.Gemma3TextConfig(**common, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                   layer_types=alternating)
    if arch == "phi3":
        return tf.Phi3Config(**common)
    if arch == "granite":
        return tf.GraniteConfig(**common, embedding_multiplier=12.0, residual_multiplier=0.22,
                                attention_multiplier=0.0625, logits_scaling=8.0)
    if arch == "granitemoehybrid":  # Granite 4.0 micro's layout: attention-only layers, dense shared MLP, no experts
        return tf.GraniteMoeHybridConfig(**common, shared_intermediate_size=128, num_local_experts=0,
                                         layer_types=["full_attention"] * layers, embedding_multiplier=12.0,
                                         residual_multiplier=0.22, attention_multiplier=0.0625,
                                         position_embedding_type="rope")
    raise ValueError(arch)


def make_tiny_model(folder: Path, arch: str, *, layers: int = 4, seed: int = 0, config=None) -> Path:
    """Save a random-weight model of ``arch`` with a tiny tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(folder, bos=arch.startswith("gemma"))
    config = config or tiny_config(arch, len(tok), layers)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random init is tiny; widen it so layers actually change the state
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(folder)
    return folder
