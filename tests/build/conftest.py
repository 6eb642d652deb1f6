"""Shared fixtures: a small ERP corpus with known PII, duplicates and bad rows, and one tiny-model
pipeline run (random llama with the real base tokenizer) that the contract tests inspect."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHATS = [
    ("c1", "연차 휴가는 어떻게 신청하나요?", "HR100 화면에서 사용일 3영업일 전까지 신청하고 팀장 승인을 받습니다."),
    ("c2", "Who approves a purchase order of KRW 20 million?",
     "The Head of Procurement approves it under release code R2 after the team leader."),
    ("c3", "My card number is 4518-1234-5678-9012, can I use it for travel?",
     "Please never share card numbers. Corporate cards are requested with form FIN-F-012."),
    ("c4", "How do I reset my HERP password?",
     "Use self-service SY200 or mail helpdesk@hanbit.example, phone 010-4821-7730."),
    ("c5", "주민번호 900101-1234567 로 재직증명서 발급되나요?",
     "재직증명서는 ESS에서 즉시 발급됩니다. 주민등록번호는 입력하지 마세요."),
    ("c6", "What is the VAT rate on export sales?", "Export sales are zero-rated with tax code S0."),
    ("c7", "재고 이동은 어떤 트랜잭션으로 하나요?", "MB1B에서 이동유형 311로 저장위치 간 이전을 처리합니다."),
    ("c8", "When is the HERP maintenance window?", "Every third Saturday from 22:00 to Sunday 04:00."),
]

DOC_MD = """# Purchase Order Approval

## Approval limits
Purchase orders up to KRW 5,000,000 are released by the Purchasing Team Leader (R1).
Orders up to KRW 30,000,000 need the Head of Procurement (R2).

## Emergency POs
Create an emergency PO (document type EM) within 1 working day; the cap is KRW 10,000,000.
"""

DOC_KO = """연차휴가 신청 안내

1. 신청 방법
HR100 화면에서 사용일 3영업일 전까지 신청합니다.

2. 당일 연차
당일 09:30까지 팀장에게 보고하고 복귀 후 2영업일 이내에 사후 신청합니다.
"""

DOC_HTML = """<html><head><title>Tax invoices</title></head><body>
<h1>Electronic tax invoices</h1><p>Issue the e-tax invoice by the 10th of the following month.</p>
<h2>Penalties</h2><p>Late issuance costs 1% of the supply value.</p></body></html>"""


def write_corpus(root: Path) -> dict[str, Path]:
    data = root / "data"
    docs = root / "kb" / "docs"
    (docs / "purchasing").mkdir(parents=True)
    (docs / "hr").mkdir(parents=True)
    (docs / "accounting").mkdir(parents=True)
    data.mkdir()
    lines = [json.dumps({"conversation_id": cid, "messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]}, ensure_ascii=False)
        for cid, q, a in CHATS]
    lines.append(lines[1].replace('"c2"', '"c2-dup"'))  # exact duplicate
    lines.append(lines[5].replace("export sales?", "export sales ?").replace('"c6"', '"c6-near"'))  # near duplicate
    (data / "chat_logs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (data / "chat_bad.jsonl").write_text(
        lines[0] + "\n" + '{"conversation_id": "broken", "messages": [\n' + "{'single': 'quotes',}\n",
        encoding="utf-8")
    (data / "empty.jsonl").write_text("", encoding="utf-8")
    (data / "qa.csv").write_text(
        "id,question,answer,source\n"
        "q1,How long does an emergency PO have?,\"Within 1 working day, capped at KRW 10,000,000.\","
        "docs/purchasing/po-approval.md\n"
        "q2,당일 연차는 어떻게 하나요?,\"당일 09:30까지 팀장에게 보고합니다.\",docs/hr/annual-leave-ko.txt\n"
        "q3,When is the tax invoice due?,By the 10th of the following month.,docs/accounting/tax-invoice.html\n"
        "q4,What happens if it is late?,,docs/accounting/tax-invoice.html\n",
        encoding="utf-8")
    (data / "qa_wrong_columns.csv").write_text("prompt_text,reply\nhello,world\n", encoding="utf-8")
    (data / "qa.jsonl").write_text(
        json.dumps({"id": "j1", "question": "Who releases POs above KRW 30 million?",
                    "answer": "The CFO releases them under code R3.", "source": "docs/purchasing/po-approval.md"})
        + "\n" + '{"id": "j2", "question": "no answer here"}\n', encoding="utf-8")
    (docs / "purchasing" / "po-approval.md").write_text(DOC_MD, encoding="utf-8")
    (docs / "hr" / "annual-leave-ko.txt").write_text(DOC_KO, encoding="utf-8")
    (docs / "accounting" / "tax-invoice.html").write_text(DOC_HTML, encoding="utf-8")
    (docs / "accounting" / "vat-codes.csv").write_text("code,rate,meaning\nS0,0%,export zero-rated\nS1,10%,domestic\n",
                                                       encoding="utf-8")
    _write_docx(docs / "hr" / "travel-policy.docx")
    _write_xlsx(docs / "accounting" / "approval-matrix.xlsx")
    (root / "kb" / "probes.jsonl").write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in [
        {"question": "Who approves a KRW 20 million PO?", "gold": "docs/purchasing/po-approval.md"},
        {"question": "연차를 당일에 쓰려면?", "gold": "docs/hr/annual-leave-ko.txt"},
        {"question": "When must e-tax invoices be issued?", "gold": "docs/accounting/tax-invoice.html"},
    ]) + "\n", encoding="utf-8")
    golden = [  # ids chosen in the held-out half (appliance.answers.golden.half_of)
        {"id": "tg-en-0", "question": "Who releases a purchase order of KRW 20,000,000?",
         "document": "docs/purchasing/po-approval.md", "answer": "The Head of Procurement releases it (R2)."},
        {"id": "tg-en-1", "question": "By when must the electronic tax invoice be issued?",
         "document": "docs/accounting/tax-invoice.html", "answer": "By the 10th of the following month."},
        {"id": "tg-ko-0", "question": "당일 연차를 쓰려면 몇 시까지 팀장에게 보고해야 하나요?",
         "document": "docs/hr/annual-leave-ko.txt", "answer": "당일 09:30까지 팀장에게 보고합니다."},
        {"id": "tg-ko-1", "question": "연차는 어느 화면에서 신청하나요?",
         "document": "docs/hr/annual-leave-ko.txt", "answer": "HR100 화면에서 사용일 3영업일 전까지 신청합니다."},
    ]
    (root / "kb" / "golden.jsonl").write_text(
        "\n".join(json.dumps(g, ensure_ascii=False) for g in golden) + "\n", encoding="utf-8")
    manual = root / "manuals" / "travel"
    manual.mkdir(parents=True)
    (manual / "travel-guide.md").write_text(
        "# Travel guide\n\n## Mileage\nPrivate car mileage is reimbursed at KRW 300 per km in TR300.\n\n"
        "## Hotels\nHotel costs are capped at KRW 150,000 per night in Seoul.\n", encoding="utf-8")
    (manual / "출장-안내.md").write_text(
        "# 출장 안내\n\n## 일비\n국내 출장 일비는 하루 30,000원입니다.\n", encoding="utf-8")
    probes = [
        {"id": "tp-en-4", "question": "How much is private car mileage reimbursed?",
         "document": "travel/travel-guide.md", "answer": "KRW 300 per km, in TR300."},
        {"id": "tp-ko-4", "question": "국내 출장 일비는 얼마인가요?", "document": "travel/출장-안내.md",
         "answer": "하루 30,000원입니다."},
    ]
    (root / "manuals" / "probes.jsonl").write_text(
        "\n".join(json.dumps(p, ensure_ascii=False) for p in probes) + "\n", encoding="utf-8")
    return {"data": data, "docs": docs, "probes": root / "kb" / "probes.jsonl",
            "golden": root / "kb" / "golden.jsonl", "manuals": root / "manuals",
            "manual_probes": root / "manuals" / "probes.jsonl"}


def _write_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Business travel policy", 1)
    document.add_paragraph("Request every trip in TR100 at least 5 working days before departure.")
    document.add_heading("Advances", 2)
    document.add_paragraph("A travel advance is paid up to 80% of the estimated cost.")
    document.save(str(path))


def _write_xlsx(path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "AP approval"
    sheet.append(["Amount up to", "Approver"])
    sheet.append(["KRW 10,000,000", "Finance team leader"])
    sheet.append(["KRW 100,000,000", "CFO"])
    workbook.save(str(path))


def tiny_overrides(corpus: dict[str, Path]) -> dict:
    data = corpus["data"]
    return {"data": {
        "chat_logs": [str(data / "chat_logs.jsonl"), str(data / "chat_bad.jsonl"), str(data / "empty.jsonl"),
                      str(data / "missing.jsonl")],
        "qa_pairs": [str(data / "qa.csv"), str(data / "qa_wrong_columns.csv"), str(data / "qa.jsonl")],
        "docs_dir": str(corpus["docs"]),
        "probes": str(corpus["probes"]),
    }}


def tiny_grounded_overrides(corpus: dict[str, Path]) -> dict:
    """The grounded recipe on a tiny random llama: a few steps, answers scored on the test corpus."""
    return tiny_overrides(corpus) | {
        "base": {"model": "tiny-random"},
        "grounded": {"section_questions": 1, "max_eval_examples": 8},
        "validate": {"max_tokens": 256},
        "finetune": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 1,
                     "logging_steps": 2, "eval_steps": 4, "save_steps": 4, "max_length": 640},
        "embedder": {"quantization": "dynamic"},
        "evaluate": {"perplexity_samples": 8, "gguf_perplexity_samples": 4, "include_base_gguf": False, "answer_items": 2,
                     "answer_max_tokens": 16, "answer_examples": 2,
                     "answer_golden": [str(corpus["golden"])], "answer_probes_dir": str(corpus["manuals"]),
                     "answer_probes": [str(corpus["manual_probes"])]},
    }


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus_overrides(corpus) -> dict:
    """Recipe overrides pointing the data settings at the test corpus."""
    return tiny_overrides(corpus)


@pytest.fixture(scope="session")
def tiny_run(corpus, tmp_path_factory):
    """One end-to-end run of the `tiny` recipe; returns (pipeline, outputs)."""
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    work = tmp_path_factory.mktemp("tiny-run")
    recipe = Recipe.load("tiny", overrides=tiny_overrides(corpus))
    pipeline = Pipeline(recipe, cache_dir=work / "cache", models_dir=work / "models")
    return pipeline, pipeline.run()


@pytest.fixture(scope="session")
def grounded_overrides(corpus) -> dict:
    """Recipe overrides running the grounded recipe on the tiny random llama over the test corpus."""
    return tiny_grounded_overrides(corpus)


@pytest.fixture(scope="session")
def grounded_run(corpus, tmp_path_factory):
    """One end-to-end run of the `grounded` recipe on the tiny random llama; returns (pipeline, outputs)."""
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    work = tmp_path_factory.mktemp("grounded-run")
    recipe = Recipe.load("grounded", overrides=tiny_grounded_overrides(corpus))
    pipeline = Pipeline(recipe, cache_dir=work / "cache", models_dir=work / "models")
    return pipeline, pipeline.run()
