"""The CPU shortcuts of the build: the GGUF answer-token loss projects only the scored positions
onto the vocabulary (and gives the figure scoring every position gives), and "auto" precision
trains in bf16 on a CPU only where it has AMX."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.engine.model import bundled_model_path
from appliance_build import finetune, llama_eval
from appliance_build.training_data import Encoder

ROWS = [{"question": "How do I reset my HERP password?", "answer": "Use self-service SY200 or mail the helpdesk."},
        {"question": "연차 휴가는 어떻게 신청하나요?", "answer": "HR100 화면에서 사용일 3영업일 전까지 신청합니다."}]


@pytest.fixture(scope="module")
def examples():
    encoder = Encoder(bundled_model_path())
    try:
        return encoder.encode(ROWS, 512)
    finally:
        encoder.close()


def every_position_loss(path, examples) -> float:
    """The answer-token loss from the logits of every position (what mean_loss did before)."""
    total, count = 0.0, 0
    with llama_eval.open_gguf(path) as runner:
        for example in examples:
            logp = llama_eval._log_softmax(runner.logits(example["input_ids"])[:-1])
            targets = np.array(example["labels"][1:])
            mask = targets != -100
            total -= float(logp[np.arange(len(targets))[mask], targets[mask]].sum())
            count += int(mask.sum())
    return total / count


def test_answer_positions_give_the_loss_of_every_position(examples):
    path = bundled_model_path()
    assert llama_eval.mean_loss(path, examples) == pytest.approx(every_position_loss(path, examples), rel=1e-3)


def test_logits_at_are_the_rows_of_logits(examples):
    ids = examples[1]["input_ids"]
    positions = [len(ids) - 2, 3, 17, 9]  # any order, across several chunks
    with llama_eval.open_gguf(bundled_model_path(), n_batch=8) as runner:
        full = runner.logits(ids)
        picked = runner.logits_at(ids, positions)
        assert runner.logits_at(ids, []).shape == (0, runner.n_vocab)
    np.testing.assert_allclose(picked, full[positions], rtol=1e-4, atol=1e-3)


def test_cpu_precision_takes_bf16_only_with_amx(monkeypatch):
    off, bf16 = {"fp16": False, "bf16": False}, {"fp16": False, "bf16": True}
    monkeypatch.setattr(finetune, "cpu_bf16", lambda: True)
    assert finetune.precision("auto", cuda=False) == bf16
    assert finetune.precision("bf16", cuda=False) == bf16
    assert finetune.precision("fp16", cuda=False) == off
    assert finetune.precision("fp32", cuda=False) == off
    monkeypatch.setattr(finetune, "cpu_bf16", lambda: False)
    assert finetune.precision("auto", cuda=False) == off
    assert finetune.precision("bf16", cuda=False) == off


def test_cpu_bf16_probe_answers_on_any_cpu():
    assert finetune.cpu_bf16() in (True, False)
