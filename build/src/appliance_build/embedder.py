"""Embedder stage: the sentence-transformers model exported to ONNX (optimum) and quantized to int8.

Dynamic int8 quantizes the transformer-fused graph (Attention, SkipLayerNorm, BiasGelu), so
onnxruntime runs QAttention and DynamicQuantizeMatMul kernels. Static int8 is calibrated on the
corpus; it is kept only if its embeddings stay close to the fp32 model's (mean cosine), else
dynamic int8 is written and the report says so.
Output follows the appliance's embedder contract: model.onnx, tokenizer.json, embedder.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CONTRACT = {"name": "all-minilm-l6-v2", "dim": 384, "max_length": 256, "pooling": "mean",
            "normalize": True, "quantization": "int8"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from an exported folder (as the appliance reads it)."""

    def __init__(self, folder: Path, max_length: int = 256):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch(texts[start:start + batch_size])
            feeds = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            hidden = self.session.run(["last_hidden_state"], feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12))
        return np.concatenate(out) if out else np.zeros((0, CONTRACT["dim"]), dtype=np.float32)


class _Calibration:
    def __init__(self, tokenizer, texts: list[str], max_length: int):
        self._batches = iter([
            {k: np.array([v], dtype=np.int64) for k, v in tokenizer(t, truncation=True, max_length=max_length).items()
             if k in INPUTS}
            for t in texts
        ])

    def get_next(self):
        return next(self._batches, None)


def export_fp32(source: Path, out: Path) -> Path:
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    model = ORTModelForFeatureExtraction.from_pretrained(str(source), export=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(out)
    return out / "model.onnx"


def quantize_static(fp32: Path, target: Path, tokenizer, texts: list[str], max_length: int) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process
    from onnxruntime.quantization import quantize_static as qs

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        qs(str(prepared), str(target), _Calibration(tokenizer, texts, max_length),
           quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
           activation_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"],
           extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def fuse(fp32: Path, target: Path) -> Path:
    """The fp32 graph with onnxruntime's BERT fusions; quantizing it yields QAttention."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((fp32.parent / "config.json").read_text())
    model = optimize_model(str(fp32), model_type="bert", num_heads=config["num_attention_heads"],
                           hidden_size=config["hidden_size"], opt_level=1)
    model.save_model_to_file(str(target))
    return target


def quantize_dynamic(fp32: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as qd

    # Per-channel weights: per-tensor scales lose too much (mean cosine to fp32 about 0.90).
    # Fused operators have no shape inference, hence the default tensor type.
    qd(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
       extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def export_embedder(source: Path, corpus: list[str], cfg: dict[str, Any], out: Path, seed: int,
                    name: str = CONTRACT["name"]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    work = out / "fp32"
    fp32 = export_fp32(source, work)
    tokenizer = AutoTokenizer.from_pretrained(str(work))
    rng = np.random.default_rng(seed)
    texts = [corpus[i] for i in rng.permutation(len(corpus))[: cfg["calibration_samples"]]] or ["ERP"]
    probe = texts[: min(64, len(texts))]

    final = out / "embedder"
    final.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "tokenizer.json", final / "tokenizer.json")
    reference = OnnxEmbedder(work, cfg["max_length"]).embed(probe)

    tried = {}
    method = cfg["quantization"]
    if method == "static":
        quantize_static(fp32, final / "model.onnx", tokenizer, texts, cfg["max_length"])
        cosine = float((OnnxEmbedder(final, cfg["max_length"]).embed(probe) * reference).sum(1).mean())
        tried["static"] = cosine
        if cosine < cfg["min_cosine_to_fp32"]:
            method = "dynamic"
    if method == "dynamic":
        quantize_dynamic(fuse(fp32, work / "fused.onnx"), final / "model.onnx")
        tried["dynamic"] = float((OnnxEmbedder(final, cfg["max_length"]).embed(probe) * reference).sum(1).mean())
    spec = {**CONTRACT, "name": name, "dim": int(reference.shape[1]), "max_length": cfg["max_length"]}
    (final / "embedder.json").write_text(json.dumps(spec, indent=2) + "\n")
    return {
        "folder": str(final),
        "fp32_folder": str(work),
        "fp32_fused": str(work / "fused.onnx") if method == "dynamic" else None,
        "method": method,
        "calibration_texts": len(texts) if "static" in tried else 0,
        "mean_cosine_to_fp32": tried,
        "onnx_bytes_fp32": fp32.stat().st_size,
        "onnx_bytes_int8": (final / "model.onnx").stat().st_size,
    }
