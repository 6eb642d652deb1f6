"""Grounded fine-tuning data and the ship rule: examples in the served shape (the appliance's own
retrieval and evidence selection), "not in the documents" targets without the gold passage, the
split by document, and per-language answer figures in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance import manifest
from appliance.answers.compose import NO_ANSWER
from appliance_build import jsonl
from appliance_build.grounded import NO_ANSWER as NO_ANSWER_LABEL
from appliance_build.grounded import Question, build_examples, drop_evaluation_questions, target_for
from appliance_build.ship import ship_decision

# On the same topic as the PO approval limits, without the answer: the distractor a question meets
# when its gold document is left out.
PO_CHANGE = """# Changing a purchase order

## Who releases a changed purchase order
A purchase order changed after its release is released again under its release code.
Price changes above KRW 1,000,000 go to the Head of Procurement.
"""


@pytest.fixture(scope="module")
def corpus_kb(corpus, embedder_dir, tmp_path_factory):
    """The test corpus plus a distractor document, in a knowledge base opened the appliance's way."""
    import shutil

    from appliance_build.knowledge import assistant_for, open_knowledge

    docs = tmp_path_factory.mktemp("corpus-kb") / "docs"
    shutil.copytree(corpus["docs"], docs)
    (docs / "purchasing" / "po-change.md").write_text(PO_CHANGE, encoding="utf-8")
    with open_knowledge(docs, embedder_dir, docs.parent / "kb") as (kb, settings):
        yield kb, settings, assistant_for(kb, settings)


PO = Question("Which release code does a purchase order of KRW 20,000,000 need?",
              "Orders up to KRW 30,000,000 need the Head of Procurement (R2).",
              "purchasing/po-approval.md", "qa", "doc:docs/purchasing/po-approval.md")


def test_evidence_without_the_gold_answer_teaches_the_not_in_the_documents_reply(corpus_kb):
    _, settings, assistant = corpus_kb
    for question, gold, language in [
        ("Who releases a purchase order of KRW 20,000,000?", "Every third Saturday from 22:00 to Sunday 04:00.", "en"),
        ("연차는 어느 화면에서 신청하나요?", "재직증명서는 ESS에서 즉시 발급됩니다.", "ko"),
    ]:
        evidence = assistant.ground([{"role": "user", "content": question}]).evidence
        assert evidence.answers(settings.answers.min_support)  # the model is asked: evidence, but not this answer
        target = target_for(Question(question, gold, "", "chat", "chat:c"), evidence,
                            verify_support=settings.answers.verify_support, sentences=3)
        assert (target.text, target.label) == (NO_ANSWER[language], NO_ANSWER_LABEL)


def test_answer_targets_state_the_evidence_with_citations_in_the_question_language(corpus_kb):
    _, settings, assistant = corpus_kb
    built = build_examples(assistant, [PO, Question("연차는 어느 화면에서 신청하나요?", "HR100 화면에서 사용일 3영업일 전까지 신청합니다.",
                                                    "hr/annual-leave-ko.txt", "qa", "doc:docs/hr/annual-leave-ko.txt")],
                           visible=None, settings=settings, cfg=_cfg(no_gold_share=0.0), seed=1,
                           count_tokens=lambda messages, target: 1)
    assert [e["label"] for e in built.examples] == ["answer", "answer"]
    english, korean = built.examples
    assert "Head of Procurement" in english["target"] and "[1]" in english["target"]
    assert "HR100" in korean["target"] and "[1]" in korean["target"]
    # The prompt is the served one: the appliance's instructions and numbered evidence, then the question.
    assert english["messages"][0]["role"] == "system" and "[1]" in english["messages"][0]["content"]
    assert english["messages"][-1] == {"role": "user", "content": PO.question}
    assert "한국어" in korean["messages"][0]["content"]


def test_a_question_asked_without_its_gold_document_never_sees_it(corpus_kb):
    kb, settings, assistant = corpus_kb
    built = build_examples(assistant, [PO], visible=None, settings=settings, cfg=_cfg(no_gold_share=1.0), seed=1,
                           count_tokens=lambda messages, target: 1)
    asked, left_out = built.examples
    assert not asked["gold_left_out"] and asked["label"] == "answer" and PO.document in asked["sources"]
    assert left_out["gold_left_out"] and left_out["sources"] == ["purchasing/po-change.md"]
    assert "Head of Procurement" in left_out["messages"][0]["content"]  # a distractor on the same topic
    assert left_out["label"] == NO_ANSWER_LABEL and left_out["target"] == NO_ANSWER["en"]


def test_training_questions_that_match_an_evaluation_question_are_left_out():
    questions = [Question("Who releases a PO of KRW 20,000,000?", "a", "", "qa", "g"),
                 Question("How do I book a meeting room?", "b", "", "qa", "g")]
    kept, dropped = drop_evaluation_questions(questions, ["Who releases a PO of KRW 20,000,000 ?"])
    assert [q.question for q in kept] == ["How do I book a meeting room?"]
    assert dropped == ["Who releases a PO of KRW 20,000,000?"]


def test_grounded_stage_splits_by_document_and_retrieves_from_train_documents_only(grounded_run):
    _, outputs = grounded_run
    validated = outputs["validate"].path
    eval_groups = {r["group"] for r in jsonl.read(validated / "eval.jsonl")}
    eval_documents = {g.split("/", 1)[1] for g in eval_groups if g.startswith("doc:")}
    grounded = outputs["grounded"]
    train = jsonl.read(grounded.path / "train.jsonl")
    assert train and eval_documents
    visible = set(grounded.summary["train_documents"])
    assert not visible & eval_documents
    for example in train:
        assert example["group"] not in eval_groups
        assert set(example["sources"]) <= visible  # evidence only from train-split documents
    assert {e["label"] for e in train} <= {"answer", "no_answer"}
    # Fine-tuning learned from these examples, prompts as served.
    assert outputs["finetune"].summary["train_examples"] == len(train)


def test_evaluate_scores_answers_per_language_and_the_manifest_records_them(grounded_run):
    _, outputs = grounded_run
    answers = json.loads((outputs["evaluate"].path / "report.json").read_text())["answers"]
    assert set(answers["sets"]) == {"golden", "manuals"}
    figures = answers["answer_figures"]
    assert set(figures) == {"en", "ko"}
    for per_mode in figures.values():
        assert set(per_mode) == {"extractive", "generative"}
        assert {"good", "degenerate", "idk", "faithful", "covers", "invented", "n"} <= set(per_mode["generative"])
    assert "## Answers (held-out, through the served path)" in (outputs["evaluate"].path / "report.md").read_text()
    packaged = manifest.verify(Path(outputs["package"].summary["folder"]))
    assert packaged.answer_figures == figures
    # Four steps of a random model beat quoting nowhere: packaged for the record, marked extractive only.
    assert packaged.extractive_only is answers["ship"]["extractive_only"] is True
    raw = json.loads((Path(outputs["package"].summary["folder"]) / "manifest.json").read_text())
    assert raw["answer_figures"] == figures and raw["extractive_only"] is True


def test_ship_rule_serves_the_model_only_where_it_beats_quoting():
    def figures(en_generative: float, ko_generative: float) -> dict:
        return {"en": {"extractive": {"good": 0.5, "n": 20}, "generative": {"good": en_generative, "n": 20}},
                "ko": {"extractive": {"good": 0.4, "n": 20}, "generative": {"good": ko_generative, "n": 20}}}

    mixed = ship_decision(figures(0.6, 0.3))
    assert mixed["modes"] == {"en": "generative", "ko": "extractive"} and not mixed["extractive_only"]
    worse = ship_decision(figures(0.45, 0.3))
    assert worse["modes"] == {"en": "extractive", "ko": "extractive"} and worse["extractive_only"]
    tie = ship_decision(figures(0.5, 0.4))  # as good is not better: quoting needs no model
    assert tie["extractive_only"]
    assert not ship_decision({})["extractive_only"]  # unmeasured is not marked


def _cfg(**overrides) -> dict:
    from appliance_build.recipe import DEFAULTS

    return {**DEFAULTS["grounded"], **overrides}
