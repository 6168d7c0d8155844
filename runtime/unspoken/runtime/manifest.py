"""The bundle manifest: a self-describing record of every file, tensor name and binding the runtime needs.

The runtime hard-codes nothing about a backbone: layer counts, KV shapes, tensor names, the prompt template and the
head's binding all come from ``manifest.json`` beside the graphs. Loading refuses a manifest it cannot trust, with a
message naming the field or file at fault.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import BindingError, BundleError
from .template import PromptTemplate

SCHEMA_VERSION = 2  # 2: the embedding table may live outside the graph (graph.embeddings)
MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def backbone_fingerprint(weights_sha256: str, lora_sha256: str | None) -> str:
    """The identity a head binds to: base weights plus the merged LoRA adapter, if any."""
    return hashlib.sha256(f"{weights_sha256}:{lora_sha256 or ''}".encode()).hexdigest()


def quantized_fingerprint(base_fingerprint: str, graph_sha256: str) -> str:
    """The identity of a quantized graph: its float source plus the exact quantized bytes a head was refit on.

    A head refit on int8 features binds to this, so it cannot be paired with the float graph (or another
    quantization of it), and a float head cannot be paired with the int8 graph.
    """
    return hashlib.sha256(f"{base_fingerprint}:int8:{graph_sha256}".encode()).hexdigest()


def _from_dict(cls, data: dict, where: str):
    """Build a dataclass from a dict, warning about (and dropping) keys this runtime does not know."""
    if not isinstance(data, dict):
        raise BundleError(f"manifest field {where!r} must be an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        warnings.warn(f"manifest {where}: ignoring unknown keys {unknown}", stacklevel=3)
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as e:
        raise BundleError(f"manifest field {where!r} is incomplete: {e}") from e


@dataclass(frozen=True)
class BackboneSpec:
    """The frozen model the graph was cut from."""

    name: str  # registry name ("smollm2-135m") or the local path it came from
    architecture: str  # transformers model_type, e.g. "llama", "gemma3_text"
    weights_sha256: str  # sha256 over the source weight file(s)
    fingerprint: str  # backbone_fingerprint(weights_sha256, lora_sha256): what heads bind to
    num_layers: int  # decoder layers of the full model
    extraction_layer: int  # the graph returns hidden_states[extraction_layer] (output of that many layers)
    hidden_size: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int  # longest prompt (tokens) the backbone was trained for
    lora_sha256: str | None = None  # sha256 of the merged adapter's weights file
    lora_config: dict | None = None  # the adapter's peft config, as written by peft
    # Attention window of sliding-window layers (Gemma), None when every layer sees the whole prompt. The runtime
    # batches several contents' KV side by side (padded) only while a padded prompt still fits in the window.
    sliding_window: int | None = None


@dataclass(frozen=True)
class GraphSpec:
    """The truncated backbone graph: one ONNX file serving prefill (past length 0) and KV continuation."""

    file: str
    num_kv_layers: int
    opset: int
    dtype: str = "float32"
    input_ids: str = "input_ids"  # int64 [batch, seq]; the graph's input unless `embeddings` is set
    attention_mask: str = "attention_mask"  # int64 [batch, past + seq]; 1 = attend
    position_ids: str = "position_ids"  # int64 [batch, seq]; always explicit
    past_key: str = "past_key_values.%d.key"  # float [batch, kv_heads, past, head_dim]
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"  # float [batch, kv_heads, past + seq, head_dim]
    present_value: str = "present.%d.value"
    hidden_state: str = "hidden_state"  # float [batch, seq, hidden]
    # Schema 2: the token-embedding table as a .npy file [vocab, hidden] (already scaled the way the model scales it,
    # e.g. Gemma's sqrt(hidden)); the runtime looks ids up in it (memory-mapped: only rows in use become resident)
    # and feeds the graph `inputs_embeds` instead of `input_ids`. None: the table is inside the graph (schema 1).
    embeddings: str | None = None
    inputs_embeds: str = "inputs_embeds"  # float [batch, seq, hidden]; used only when `embeddings` is set


@dataclass(frozen=True)
class TokenizerSpec:
    file: str  # a tokenizers-library tokenizer.json
    prepend_ids: list[int] = field(default_factory=list)  # e.g. Gemma's <bos>; SmolLM2 adds none
    pad_id: int = 0  # only fills padded positions, which are masked out


@dataclass(frozen=True)
class HeadBinding:
    """What a head was trained on; the runtime refuses a graph that differs in any field."""

    backbone_fingerprint: str
    extraction_layer: int
    hidden_size: int
    template_sha256: str


@dataclass(frozen=True)
class HeadSpec:
    """The head+calibrator graph: features [n, hidden] float32 -> calibrated probability [n] float64."""

    file: str
    kind: str  # "mlp" or "linear"
    binding: HeadBinding
    input: str = "features"
    output: str = "probability"
    training: dict = field(default_factory=dict)  # split sizes and held-out metrics


@dataclass(frozen=True)
class Manifest:
    """Everything in ``manifest.json``."""

    backbone: BackboneSpec
    graph: GraphSpec
    tokenizer: TokenizerSpec
    template: PromptTemplate
    head: HeadSpec
    files: dict[str, str]  # file name (relative to the bundle) -> sha256
    parity: dict = field(default_factory=dict)  # ORT vs torch differences measured at export
    schema_version: int = SCHEMA_VERSION
    created_by: str = ""
    # int8 bundles only (absent otherwise): settings, the MatMuls kept in fp32, base_fingerprint, quality figures
    quantization: dict = field(default_factory=dict)

    @property
    def template_sha256(self) -> str:
        return self.template.sha256

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["template_sha256"] = self.template.sha256
        if not d["quantization"]:
            del d["quantization"]  # float bundles keep the manifest older runtimes wrote
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise BundleError("manifest.json has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"bundle manifest schema version {version} is newer than this runtime understands "
                f"(up to {SCHEMA_VERSION}); upgrade unspoken"
            )
        for key in ("backbone", "graph", "tokenizer", "template", "head", "files"):
            if key not in data:
                raise BundleError(f"manifest.json lacks the field {key!r}")
        head = dict(data["head"])
        head["binding"] = _from_dict(HeadBinding, head.get("binding", {}), "head.binding")
        try:
            template = PromptTemplate.from_dict(data["template"])
        except (TypeError, ValueError) as e:
            raise BundleError(f"manifest field 'template' is invalid: {e}") from e
        stated = data.get("template_sha256")
        if stated is not None and stated != template.sha256:
            raise BundleError("manifest template_sha256 does not match the template text it holds")
        return cls(
            backbone=_from_dict(BackboneSpec, data["backbone"], "backbone"),
            graph=_from_dict(GraphSpec, data["graph"], "graph"),
            tokenizer=_from_dict(TokenizerSpec, data["tokenizer"], "tokenizer"),
            template=template,
            head=_from_dict(HeadSpec, head, "head"),
            files=dict(data["files"]),
            parity=dict(data.get("parity", {})),
            schema_version=version,
            created_by=str(data.get("created_by", "")),
            quantization=_optional_dict(data, "quantization"),
        )

    def check_binding(self) -> None:
        """Refuse a head trained for another backbone, layer, width or template, naming the field."""
        if self.quantization:
            base = self.quantization.get("base_fingerprint")
            want = quantized_fingerprint(str(base), str(self.files.get(self.graph.file)))
            if self.backbone.fingerprint != want:
                raise BindingError(
                    "quantized graph does not match its fingerprint: backbone.fingerprint is "
                    f"{self.backbone.fingerprint!r} but quantization.base_fingerprint and the graph's sha256 give "
                    f"{want!r}; the graph was swapped or the manifest edited: re-export the bundle"
                )
        b = self.head.binding
        expected = {
            "backbone_fingerprint": self.backbone.fingerprint,
            "extraction_layer": self.backbone.extraction_layer,
            "hidden_size": self.backbone.hidden_size,
            "template_sha256": self.template.sha256,
        }
        for name, want in expected.items():
            got = getattr(b, name)
            if got != want:
                raise BindingError(
                    f"head does not fit this graph: head.binding.{name} is {got!r} but the graph has {want!r}; "
                    "retrain the head on this backbone/layer/template (unspoken train-head) or export a matching bundle"
                )


def _optional_dict(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BundleError(f"manifest field {key!r} must be an object, got {type(value).__name__}")
    return dict(value)


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(bundle_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_manifest(bundle_dir: str | Path, *, verify_files: bool = True) -> tuple[Manifest, dict]:
    """Read, validate and (by default) hash-check a bundle. Returns the manifest and a dict of check timings."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.exists():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a bundle folder: it is a file")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: it has no {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from e
    manifest = Manifest.from_dict(data)
    manifest.check_binding()
    needed = {manifest.graph.file, manifest.head.file, manifest.tokenizer.file}
    if manifest.graph.embeddings:
        needed.add(manifest.graph.embeddings)
    missing_from_list = sorted(needed - set(manifest.files))
    if missing_from_list:
        raise BundleError(f"manifest 'files' does not list {missing_from_list}")
    t0 = time.perf_counter()
    for name, want in manifest.files.items():
        file = bundle_dir / name
        if not file.is_file():
            raise BundleError(f"bundle file {name} is missing from {bundle_dir}")
        if verify_files:
            got = sha256_file(file)
            if got != want:
                raise BundleError(
                    f"bundle file {name} is damaged or was edited: sha256 {got[:16]}... but the manifest says "
                    f"{want[:16]}...; re-export the bundle"
                )
    return manifest, {"verify_seconds": time.perf_counter() - t0 if verify_files else 0.0}
