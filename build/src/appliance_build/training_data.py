"""Records tokenized exactly as the appliance serves them: the base GGUF's own chat template and
llama.cpp tokenizer, so training, evaluation and serving see the same token ids. Loss is on the
answer only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_MARK = "\u2063REPLY\u2063"  # stands in for a reply while reading what the template puts after one


class Encoder:
    def __init__(self, tokenizer_gguf: Path):
        from appliance.engine.model import Model

        self.model = Model(tokenizer_gguf)
        self.pad_id = self.model_eos()
        # What the chat template writes after an assistant reply ("<|im_end|>\n" for ChatML): the
        # model learns to end its answer with it, and its first token is where generation stops.
        rendered = self.model.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARK}],
            add_generation_prompt=False)
        end_text = rendered.split(_MARK, 1)[1] if _MARK in rendered else ""
        self.end_ids = self.model.tokenize(end_text, special=True) if end_text.strip() else [self.pad_id]
        self.stop_id = self.end_ids[0]
        self.n_vocab = self.model_vocab_size()

    def model_eos(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_vocab_eos(self.model.vocab))

    def model_vocab_size(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_vocab_n_tokens(self.model.vocab))

    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The served prompt of `messages`: the chat template up to where the assistant speaks."""
        return self.model.tokenize(self.model.apply_chat_template(list(messages)), special=True)

    def prompt_ids(self, question: str) -> list[int]:
        return self.chat_ids([{"role": "user", "content": question}])

    def count(self, text: str) -> int:
        return len(self.model.tokenize(text, special=False))

    def example(self, prompt: list[int], answer: str, max_length: int) -> dict[str, list[int]] | None:
        """input_ids, attention_mask and labels (the answer and the end of turn); None when
        truncation would leave no answer token."""
        answer_ids = self.model.tokenize(answer, special=False) + self.end_ids
        ids = (prompt + answer_ids)[:max_length]
        labels = ([-100] * len(prompt) + answer_ids)[:max_length]
        if all(label == -100 for label in labels):
            return None
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}

    def encode(self, records: list[dict[str, Any]], max_length: int) -> list[dict[str, list[int]]]:
        """Question -> answer records, or grounded examples (served `messages` -> `target`)."""
        examples = []
        for record in records:
            if "messages" in record:
                prompt, answer = self.chat_ids(record["messages"]), record["target"]
            else:
                prompt, answer = self.prompt_ids(record["question"]), record["answer"]
            example = self.example(prompt, answer, max_length)
            if example is not None:
                examples.append(example)
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


def answer_loss(model, batch: dict, reduction: str = "mean"):
    """Cross-entropy over the answer tokens, projecting only their positions onto the vocabulary.
    `model` is a causal LM (or a PEFT wrapper of one) with a decoder and output embeddings."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logits = causal.get_output_embeddings()(hidden[:, :-1][mask]).float()
    return torch.nn.functional.cross_entropy(logits, labels[mask], reduction=reduction)


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
            total += answer_loss(model, batch, reduction="sum").item()
            count += int((batch["labels"][:, 1:] != -100).sum())
    return total / max(count, 1)
