"""Records tokenized exactly as the appliance serves them: the base GGUF's own chat template and
llama.cpp tokenizer, so training, evaluation and serving see the same token ids. Loss is on the
answer only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

END_OF_TURN = "<|im_end|>"


class Encoder:
    def __init__(self, tokenizer_gguf: Path):
        from appliance.engine.model import Model

        self.model = Model(tokenizer_gguf)
        self.pad_id = 2
        end = self.model.tokenize(END_OF_TURN, special=True)
        self.end_ids = end + self.model.tokenize("\n", special=False)
        self.stop_id = end[0]
        self.n_vocab = self.model_vocab_size()

    def model_vocab_size(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_vocab_n_tokens(self.model.vocab))

    def prompt_ids(self, question: str) -> list[int]:
        prompt = self.model.apply_chat_template([{"role": "user", "content": question}])
        return self.model.tokenize(prompt, special=True)

    def count(self, text: str) -> int:
        return len(self.model.tokenize(text, special=False))

    def encode(self, records: list[dict[str, Any]], max_length: int) -> list[dict[str, list[int]]]:
        examples = []
        for record in records:
            prompt = self.prompt_ids(record["question"])
            answer = self.model.tokenize(record["answer"], special=False) + self.end_ids
            ids = (prompt + answer)[:max_length]
            labels = ([-100] * len(prompt) + answer)[:max_length]
            if any(label != -100 for label in labels):
                examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
        return examples

    def close(self) -> None:
        self.model.close()


class Collator:
    """Right-pads a batch; padded label positions are ignored by the loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]):
        import torch

        width = max(len(x["input_ids"]) for x in batch)

        def pad(key: str, value: int):
            return torch.tensor([x[key] + [value] * (width - len(x[key])) for x in batch])

        return {"input_ids": pad("input_ids", self.pad_id), "attention_mask": pad("attention_mask", 0),
                "labels": pad("labels", -100)}


def mean_loss(model, examples: list[dict[str, list[int]]], pad_id: int, batch_size: int = 8) -> float:
    """Token-weighted mean cross-entropy over answer tokens (exp of it is the perplexity)."""
    import torch

    collate = Collator(pad_id)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            mask = shift_labels != -100
            loss = torch.nn.functional.cross_entropy(shift_logits[mask], shift_labels[mask], reduction="sum")
            total += loss.item()
            count += int(mask.sum())
    return total / max(count, 1)
