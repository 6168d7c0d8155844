"""The truncated backbone graph: one ONNX Runtime session for prefill and KV continuation, with reused buffers.

Inputs and outputs are bound with IOBinding to grow-only buffers, so the hot path allocates nothing once the largest
shape has been seen. Tensor names come from the manifest and are checked against the graph at load.

Bundles of schema 2 keep the token-embedding table out of the graph, in a .npy file that is memory-mapped and looked
up here: a 49k x 576 (SmolLM2, 113 MB) or 262k x 640 (Gemma 3, 671 MB) float32 table then costs resident memory only
for the rows of tokens actually seen, instead of all of it inside the ONNX Runtime session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BundleError
from .manifest import BackboneSpec, GraphSpec
from .session import make_session

_DTYPES = {"float32": np.float32, "float16": np.float16}


class BufferPool:
    """Named grow-only flat arrays; ``view`` returns a C-contiguous array of the asked shape over one of them."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def view(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        size = int(np.prod(shape))
        flat = self._flat.get(name)
        if flat is None or flat.size < size or flat.dtype != np.dtype(dtype):
            flat = np.empty(max(size, 1), dtype=dtype)
            self._flat[name] = flat
        return flat[:size].reshape(shape)


def _load_table(path: Path, backbone: BackboneSpec) -> np.ndarray:
    try:
        table = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BundleError(f"embedding table {path.name} cannot be read: {e}") from e
    if table.ndim != 2 or table.shape[1] != backbone.hidden_size or table.dtype != np.float32:
        raise BundleError(
            f"embedding table {path.name} is {table.dtype} {list(table.shape)}; the manifest needs float32 "
            f"[vocab, {backbone.hidden_size}]"
        )
    return table


class BackboneGraph:
    """Runs ``hidden, presents = graph(input_ids, attention_mask, position_ids, past)``."""

    def __init__(self, path: str | Path, spec: GraphSpec, backbone: BackboneSpec, **session_kwargs) -> None:
        self.spec = spec
        self.embeddings = _load_table(Path(path).parent / spec.embeddings, backbone) if spec.embeddings else None
        self.num_layers = spec.num_kv_layers
        self.kv_heads = backbone.num_kv_heads
        self.head_dim = backbone.head_dim
        self.hidden_size = backbone.hidden_size
        self.dtype = _DTYPES[spec.dtype]
        self.session = make_session(path, **session_kwargs)
        self.past_names = [(spec.past_key % i, spec.past_value % i) for i in range(self.num_layers)]
        self.present_names = [(spec.present_key % i, spec.present_value % i) for i in range(self.num_layers)]
        self._check_io()
        self.buffers = BufferPool()

    def _check_io(self) -> None:
        first = self.spec.inputs_embeds if self.embeddings is not None else self.spec.input_ids
        want_in = {first, self.spec.attention_mask, self.spec.position_ids}
        want_in |= {n for pair in self.past_names for n in pair}
        want_out = {self.spec.hidden_state} | {n for pair in self.present_names for n in pair}
        got_in = {i.name for i in self.session.get_inputs()}
        got_out = {o.name for o in self.session.get_outputs()}
        if got_in != want_in or got_out != want_out:
            raise BundleError(
                "graph tensors do not match the manifest: "
                f"inputs missing {sorted(want_in - got_in)[:4]}, unexpected {sorted(got_in - want_in)[:4]}; "
                f"outputs missing {sorted(want_out - got_out)[:4]}, unexpected {sorted(got_out - want_out)[:4]}"
            )

    def empty_past(self, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        shape = (batch, self.kv_heads, 0, self.head_dim)
        z = np.zeros(shape, dtype=self.dtype)
        return [(z, z)] * self.num_layers

    def run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        past: list[tuple[np.ndarray, np.ndarray]],
        *,
        present_slot: str = "scratch",
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """One forward pass. Returned arrays are views into reused buffers, valid until the next call that uses
        the same ``present_slot`` (hidden states always share one buffer)."""
        batch, seq = input_ids.shape
        past_len = past[0][0].shape[2] if past else 0
        io = self.session.io_binding()
        if self.embeddings is None:
            io.bind_cpu_input(self.spec.input_ids, np.ascontiguousarray(input_ids, dtype=np.int64))
        else:
            embeds = self.buffers.view("inputs_embeds", (batch, seq, self.hidden_size), self.dtype)
            np.take(self.embeddings, input_ids, axis=0, out=embeds)
            io.bind_cpu_input(self.spec.inputs_embeds, embeds)
        io.bind_cpu_input(self.spec.attention_mask, np.ascontiguousarray(attention_mask, dtype=np.int64))
        io.bind_cpu_input(self.spec.position_ids, np.ascontiguousarray(position_ids, dtype=np.int64))
        for (kname, vname), (k, v) in zip(self.past_names, past):
            io.bind_cpu_input(kname, k)
            io.bind_cpu_input(vname, v)
        hidden = self.buffers.view("hidden", (batch, seq, self.hidden_size), self.dtype)
        self._bind_out(io, self.spec.hidden_state, hidden)
        kv_shape = (batch, self.kv_heads, past_len + seq, self.head_dim)
        presents = []
        for kname, vname in self.present_names:
            k = self.buffers.view(f"{present_slot}:{kname}", kv_shape, self.dtype)
            v = self.buffers.view(f"{present_slot}:{vname}", kv_shape, self.dtype)
            self._bind_out(io, kname, k)
            self._bind_out(io, vname, v)
            presents.append((k, v))
        self.session.run_with_iobinding(io)
        return hidden, presents

    @staticmethod
    def _bind_out(io, name: str, arr: np.ndarray) -> None:
        io.bind_output(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)

    def gather_past(self, sources: list[list[tuple[np.ndarray, np.ndarray]]], width: int
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row r's KV from ``sources[r]`` (per layer (key, value) [kv_heads, t_r, head_dim]), right-padded with zeros
        to ``width`` in reused [rows, kv_heads, width, head_dim] buffers. Rows that share one source (the same
        object) are filled by one broadcast copy per layer (ONNX attention does not broadcast batch)."""
        rows = len(sources)
        shape = (rows, self.kv_heads, width, self.head_dim)
        out = [(self.buffers.view(f"past:{k}", shape, self.dtype), self.buffers.view(f"past:{v}", shape, self.dtype))
               for k, v in self.past_names]
        groups: dict[int, tuple[list, list[int]]] = {}
        for r, src in enumerate(sources):
            groups.setdefault(id(src), (src, []))[1].append(r)
        for src, members in groups.values():
            sel = slice(members[0], members[-1] + 1) if members[-1] - members[0] + 1 == len(members) else members
            t = src[0][0].shape[1]
            for (kb, vb), (k, v) in zip(out, src):
                kb[sel, :, :t] = k
                vb[sel, :, :t] = v
                if t < width:  # padded slots are masked out, but must hold numbers: 0 * NaN would still be NaN
                    kb[sel, :, t:] = 0
                    vb[sel, :, t:] = 0
        return out
