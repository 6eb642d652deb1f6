"""A Hugging Face llama model written as a GGUF file with the `gguf` package.

Hand-written because llama.cpp's convert_hf_to_gguf.py is not pip-installable; llama needs only
a short name map. The tokenizer metadata is copied verbatim from the base GGUF, since rebuilding
it from a GGUF-derived HF tokenizer can silently change the vocabulary type.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from gguf import MODEL_TENSOR, TENSOR_NAMES, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType

from appliance_build.errors import BuildError

_LAYER_MAP = {
    "input_layernorm": MODEL_TENSOR.ATTN_NORM,
    "self_attn.q_proj": MODEL_TENSOR.ATTN_Q,
    "self_attn.k_proj": MODEL_TENSOR.ATTN_K,
    "self_attn.v_proj": MODEL_TENSOR.ATTN_V,
    "self_attn.o_proj": MODEL_TENSOR.ATTN_OUT,
    "post_attention_layernorm": MODEL_TENSOR.FFN_NORM,
    "mlp.gate_proj": MODEL_TENSOR.FFN_GATE,
    "mlp.up_proj": MODEL_TENSOR.FFN_UP,
    "mlp.down_proj": MODEL_TENSOR.FFN_DOWN,
}
_TOP_MAP = {
    "model.embed_tokens": MODEL_TENSOR.TOKEN_EMBD,
    "model.norm": MODEL_TENSOR.OUTPUT_NORM,
    "lm_head": MODEL_TENSOR.OUTPUT,
}


def gguf_name(hf_name: str) -> str:
    stem = hf_name.removesuffix(".weight")
    if stem in _TOP_MAP:
        return TENSOR_NAMES[_TOP_MAP[stem]] + ".weight"
    parts = stem.split(".", 3)  # model.layers.<n>.<rest>
    if len(parts) == 4 and parts[1] == "layers" and parts[3] in _LAYER_MAP:
        return TENSOR_NAMES[_LAYER_MAP[parts[3]]].format(bid=int(parts[2])) + ".weight"
    raise BuildError(f"Tensor {hf_name} has no GGUF name; only plain llama models can be exported.")


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's rope pairs dimensions (i, i+1); Hugging Face pairs (i, i+d/2): reorder q/k rows.
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def copy_tokenizer(reader: GGUFReader, writer: GGUFWriter) -> int:
    copied = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)
        copied += 1
    return copied


def export_gguf(model_dir: Path, tokenizer_gguf: Path, out: Path, *, name: str) -> dict[str, Any]:
    """Write `model_dir` (a llama HF folder) as an f16 GGUF at `out`; norms stay f32."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = model.config
    if cfg.model_type != "llama":
        raise BuildError(f"{model_dir} is a {cfg.model_type} model; the exporter writes llama only.")
    reader = GGUFReader(str(tokenizer_gguf))
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    if vocab != cfg.vocab_size:
        raise BuildError(f"Model vocabulary ({cfg.vocab_size}) differs from {tokenizer_gguf}'s "
                         f"tokenizer ({vocab}); export needs the base's vocabulary.")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer = GGUFWriter(str(tmp), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(float(getattr(cfg, "rope_theta", 10000.0)))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    if head_dim != cfg.hidden_size // cfg.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    copied = copy_tokenizer(reader, writer)

    tensors = 0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        data = tensor.detach().cpu().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        data = data.astype(np.float32 if data.ndim == 1 else np.float16)
        writer.add_tensor(gguf_name(hf_name), data)
        tensors += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return {"path": str(out), "tensors": tensors, "tokenizer_keys_copied": copied,
            "bytes": out.stat().st_size}
