"""Export checks: the exported GGUF tokenizes exactly like the base, and its logits match torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PROBES = [
    "How do I approve a purchase order in HERP?",
    "연차 휴가는 어떻게 신청하나요? 사번 2024-0113, 내선 2230.",
    "<|im_start|>user\nWhat is tax code S0?<|im_end|>\n<|im_start|>assistant\n",
    "재고 이동(이전전기) 처리 절차: MB1B, 이동유형 311 / Movement type 311.",
    "  leading spaces, tabs\tand\nnewlines; émojis 🙂 and symbols ₩1,000,000 (KRW)",
    "<|endoftext|>",
]


def tokenizer_identity(base_gguf: Path, exported_gguf: Path, probes: list[str] = PROBES) -> dict[str, Any]:
    from appliance.engine.model import Model

    base, exported = Model(base_gguf), Model(exported_gguf)
    try:
        mismatches = []
        for text in probes:
            for special in (True, False):
                a, b = base.tokenize(text, special=special), exported.tokenize(text, special=special)
                if a != b:
                    mismatches.append({"text": text, "special": special, "base": a[:20], "exported": b[:20]})
        template_same = base.apply_chat_template([{"role": "user", "content": "hi"}]) == \
            exported.apply_chat_template([{"role": "user", "content": "hi"}])
    finally:
        base.close()
        exported.close()
    return {"probes": len(probes) * 2, "mismatches": mismatches, "chat_template_identical": template_same,
            "identical": not mismatches and template_same}


def logits_parity(model_dir: Path, gguf_path: Path, token_ids: list[list[int]], tolerance: float) -> dict[str, Any]:
    """Max |logit difference| (torch fp32 vs llama.cpp), normalised by the logits' std, and top-1 agreement."""
    import torch
    from transformers import AutoModelForCausalLM

    from appliance_build.llama_eval import logits, open_gguf

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    max_abs = max_rel = 0.0
    agree = total = 0
    with open_gguf(gguf_path) as llm, torch.no_grad():
        for ids in token_ids:
            expected = model(torch.tensor([ids])).logits[0].numpy()
            got = logits(llm, ids)
            diff = np.abs(expected - got)
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float(diff.max() / (expected.std() + 1e-6)))
            agree += int((expected.argmax(-1) == got.argmax(-1)).sum())
            total += len(ids)
    return {"max_abs_diff": max_abs, "max_diff_over_std": max_rel, "top1_agreement": agree / max(total, 1),
            "tokens": total, "tolerance_over_std": tolerance, "within_tolerance": max_rel <= tolerance}
