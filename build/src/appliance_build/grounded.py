"""Grounded training examples (retrieval-augmented fine-tuning): each question is asked of the
customer's documents through the appliance's own retrieval and evidence selection, and the model
learns the answer it should give from that evidence.

- The prompt is the served one: `evidence_messages` over the selected evidence (distractor
  passages included), which the model's chat template renders at training time.
- The target states the gold evidence with its citation marks, in the question's language: the
  reference answer's sentences that the appliance's verifier keeps, else the evidence spans that
  hold the gold answer. Every target passes the verifier, so none teaches what serving removes.
- Without the gold passage in the evidence (retrieval missed it, or the gold document was left out
  on purpose) the target is the appliance's own "not in the documents" reply.
- Questions the appliance answers without the model (evidence too weak) are not examples.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.answers.compose import no_answer, render_quote
from appliance.answers.evidence import HEADER, ROW, Evidence
from appliance.answers.prompt import evidence_block, evidence_messages
from appliance.answers.quality import COVERS_SHARE, GOLD_PREFIX_CHARS
from appliance.answers.text import content_units, facts, plain, share_in
from appliance.answers.verify import verify_text
from appliance.knowledge.analyzer import is_korean
from appliance_build.knowledge import document_group

NOT_IN_EVIDENCE = 0.2  # below this share of the gold answer in the evidence, the evidence lacks it
ANSWER, NO_ANSWER = "answer", "no_answer"


@dataclass(frozen=True)
class Question:
    question: str
    gold: str  # the reference answer, or the document section that answers
    document: str  # knowledge-base source of the gold document; "" when unknown (chat logs)
    kind: str  # "qa", "chat" or "section"
    group: str  # the validate stage's split group
    history: tuple[tuple[str, str], ...] = ()  # earlier (role, content) turns of a conversation
    augmented: bool = False

    @property
    def lang(self) -> str:
        return "ko" if is_korean(self.question) else "en"

    def messages(self) -> list[dict[str, str]]:
        return [*({"role": r, "content": c} for r, c in self.history), {"role": "user", "content": self.question}]


@dataclass
class Target:
    text: str | None  # None: no example (the reason says why)
    label: str = ""  # ANSWER or NO_ANSWER
    source: str = ""  # "reference" (the reference answer, verified), "evidence" (quoted spans), "no_answer"
    reason: str = ""


# -- questions ------------------------------------------------------------------------------------

def kb_source(group: str, docs_folder: str) -> str:
    """The knowledge-base source name of a "doc:<folder>/<path>" split group ("" for other groups)."""
    if not group.startswith("doc:"):
        return ""
    path = group[4:]
    return path[len(docs_folder) + 1:] if path.startswith(docs_folder + "/") else path


def questions_from_records(records: Iterable[dict[str, Any]], docs_folder: str, *, per_section: int,
                           seed: int) -> list[Question]:
    """QA pairs and chat turns as asked; document sections as `per_section` generated questions."""
    rng = random.Random(seed)
    out = []
    for record in records:
        augmented = "augmented" in record.get("tags", [])
        if record["kind"] == "doc":
            for question in section_questions(record, per_section, rng):
                out.append(Question(question, record["answer"], kb_source(record["group"], docs_folder),
                                    "section", record["group"]))
            continue
        history = tuple((m["role"], m["content"]) for m in record.get("history") or ())
        out.append(Question(record["question"], record["answer"], kb_source(record["group"], docs_folder),
                            record["kind"], record["group"], history, augmented))
    return out


_NUMBERING = re.compile(r"^\s*(?:\d+(?:\.\d+)*[.)]?|[①-⑳]|[가-하][.)]|[IVX]+\.)\s*")
_CODE_IN_HEADING = re.compile(r"\(([A-Z]{1,5}-?\d{2,4}[A-Z]?)\)")

EN_TEMPLATES = [
    "What does the {title} say about {topic}?",
    "Can you explain {topic} to me?",
    "What are the rules for {topic}?",
    "I need help with {topic}. What should I know?",
    "Where can I find the details on {topic} in the {title}?",
    "Quick question about {topic}: how does it work?",
]
EN_CODE_TEMPLATES = ["How does {topic} work in {code}?", "What do I do in {code} for {topic}?"]
KO_TEMPLATES = [
    "{topic}{eun} 어떻게 되나요?",
    "{topic}에 대해 알려 주세요.",
    "{title}에서 {topic} 내용을 설명해 주세요.",
    "{topic} 관련 규정이 궁금합니다.",
    "{topic} 처리는 어떻게 하나요?",
    "질문이 있습니다. {topic}{eun} 어떻게 하면 되나요?",
]
KO_CODE_TEMPLATES = ["{code}에서 {topic}{eun} 어떻게 하나요?"]


def _particle(word: str, with_final: str, without_final: str) -> str:
    """Korean particle after `word`: 은/이 after a final consonant, 는/가 after a vowel."""
    last = word.rstrip()[-1:] if word.strip() else ""
    if "\uac00" <= last <= "\ud7a3":
        return with_final if (ord(last) - 0xAC00) % 28 else without_final
    return without_final if last.isalpha() else with_final


def section_questions(record: dict[str, Any], count: int, rng: random.Random) -> list[str]:
    """Questions about one document section from templates and paraphrase rules, in the section's
    language (its heading names the topic; a code in the heading names the screen)."""
    title = record.get("doc_path", "").rsplit("/", 1)[-1]
    title = re.sub(r"[-_]+", " ", re.sub(r"(-ko)?\.[a-z]+$", "", title)).strip()
    heading = _NUMBERING.sub("", record.get("heading") or "").strip()
    code_match = _CODE_IN_HEADING.search(heading)
    topic = _CODE_IN_HEADING.sub("", heading).strip(" :-") or title
    korean = is_korean(heading + " " + record["answer"][:200])
    if korean:
        templates = list(KO_TEMPLATES) + (KO_CODE_TEMPLATES if code_match else [])
    else:
        words = topic.split()
        if words and words[0][1:].islower() and all(not w[:1].isupper() for w in words[1:]):
            topic = topic[0].lower() + topic[1:]  # "Approval limits" reads "approval limits" mid-sentence
        templates = list(EN_TEMPLATES) + (EN_CODE_TEMPLATES if code_match else [])
    rng.shuffle(templates)
    values = {"title": title, "topic": topic, "code": code_match.group(1) if code_match else "",
              "eun": _particle(topic, "은", "는")}
    return [template.format(**values) for template in templates[:count]]


# -- targets --------------------------------------------------------------------------------------

def _squash(text: str) -> str:
    return " ".join(plain(text).split())


def _in_section(text: str, section: str, section_units: set[str]) -> bool:
    if _squash(text) and _squash(text) in _squash(section):
        return True
    units = content_units(plain(text))
    return len(units) >= 3 and share_in(units, section_units) >= 0.9


def _cite(sentence: str, number: int) -> str:
    body = sentence.strip()
    return f"{body} [{number}]"


def _best_source(sentence: str, evidence: Evidence) -> int:
    units = set(content_units(plain(sentence)))
    best, number = -1.0, 1
    for quote in evidence.quotes:
        text = " ".join(s.text for s in quote.spans)
        score = len(units & set(content_units(plain(text))))
        if score > best:
            best, number = score, quote.source + 1
    return number


def restate_reference(question: Question, evidence: Evidence, block: str, verify_support: float) -> str | None:
    """The reference answer's sentences the verifier keeps, each citing its best source; None
    unless they still cover the reference answer."""
    verifier = verify_text(question.gold, block, question.question, min_support=verify_support)
    kept = [c.sentence for c in verifier.checks if c.kept and c.sentence.strip()]
    if not kept:
        return None
    gold_units = content_units(plain(question.gold[:GOLD_PREFIX_CHARS]))
    if share_in(gold_units, set(content_units(plain(" ".join(kept))))) < COVERS_SHARE:
        return None
    return " ".join(_cite(s, _best_source(s, evidence)) for s in kept)


def quote_gold(evidence: Evidence, matches: Callable[[str], bool], limit: int) -> str | None:
    """The evidence spans that hold the gold answer (at most `limit`, in evidence order), rendered
    as the extractive answer renders them, with their citation marks."""
    blocks, taken = [], 0
    for quote in evidence.quotes:
        chosen = [i for i, span in enumerate(quote.spans) if span.kind != HEADER and matches(span.text)]
        chosen = chosen[:max(0, limit - taken)]
        if not chosen:
            continue
        taken += len(chosen)
        if any(quote.spans[i].kind == ROW for i in chosen):  # a row reads with its header
            chosen = sorted(set(chosen) | {i for i, s in enumerate(quote.spans) if s.kind == HEADER})
        part = replace(quote, spans=tuple(quote.spans[i] for i in chosen), focus=0)
        blocks.append("\n".join(render_quote(part, quote.source + 1)))
    return "\n".join(blocks) or None


def target_for(question: Question, evidence: Evidence, *, verify_support: float, sentences: int) -> Target:
    """What the model should answer to `question` from `evidence`."""
    block = evidence_block(evidence)
    evidence_units = set(content_units(plain(block)))
    gold_units = content_units(plain(question.gold[:GOLD_PREFIX_CHARS]))
    covered = share_in(gold_units, evidence_units) if gold_units else 0.0
    gold_facts = facts(question.gold[:GOLD_PREFIX_CHARS])

    from_gold = [q for q in evidence.quotes if evidence.sources[q.source].document == question.document]
    if question.kind == "section":
        section_units = set(content_units(plain(question.gold)))
        answerable = any(_in_section(s.text, question.gold, section_units) for q in from_gold for s in q.spans)
        matches = lambda text: _in_section(text, question.gold, section_units)  # noqa: E731
    else:
        answerable = covered >= COVERS_SHARE
        gold_set = set(gold_units)

        def matches(text: str) -> bool:
            units = content_units(plain(text))
            return bool(units) and (share_in(units, gold_set) >= 0.5 or bool(facts(text) & gold_facts))

    if not answerable:
        # Known gold document absent from the evidence: the gold passage is not there, whatever
        # topic words the distractors share with it. Otherwise only clearly missing counts.
        if (question.document and not from_gold) or \
                (covered < NOT_IN_EVIDENCE and not (gold_facts & facts(block))):
            return Target(no_answer(question.question), NO_ANSWER, "no_answer")
        return Target(None, reason="gold answer partly in the evidence")

    text, source = None, ""
    if question.kind != "section":
        text, source = restate_reference(question, evidence, block, verify_support), "reference"
    if text is None:
        text, source = quote_gold(evidence, matches, sentences), "evidence"
        if text is None:
            return Target(None, reason="no evidence span holds the gold answer")
        if is_korean(plain(text)) != evidence.korean:
            return Target(None, reason="gold evidence is in the other language")
    # What serving would remove (a restated question, an unsupported sentence) is not taught.
    verifier = verify_text(text, block, question.question, min_support=verify_support)
    kept = verifier.kept_text().strip()
    if not kept or verifier.removed:
        return Target(None, reason="target does not pass the verifier")
    return Target(kept, ANSWER, source)


# -- examples -------------------------------------------------------------------------------------

@dataclass
class Built:
    examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def build_examples(assistant, questions: Sequence[Question], *, visible: Sequence[str] | None,
                   settings, cfg: dict[str, Any], seed: int, count_tokens: Callable[[list[dict], str], int],
                   progress: Callable[[int, int], None] | None = None) -> Built:
    """Examples for `questions`, retrieving only from the documents in `visible` (KB sources; None:
    all of them). Some answerable questions are asked again with their gold document left out."""
    rng = random.Random(seed)
    answers = settings.answers
    built = Built()
    groups_of = (lambda leave_out: [document_group(s) for s in visible if s != leave_out]) if visible is not None \
        else (lambda leave_out: ["all"] if not leave_out else None)

    def one(question: Question, groups: list[str], left_out: str) -> Target | None:
        found = assistant.ground(question.messages(), groups)
        evidence = found.evidence
        if not evidence.answers(answers.min_support):
            built.skipped["answered without the model (evidence too weak)"] += 1
            return None
        target = target_for(question, evidence, verify_support=answers.verify_support,
                            sentences=cfg["answer_sentences"])
        if target.text is None:
            built.skipped[target.reason] += 1
            return None
        messages = evidence_messages(question.messages(), evidence)
        tokens = count_tokens(messages, target.text)
        if tokens > cfg["max_tokens"]:
            built.skipped[f"longer than {cfg['max_tokens']} tokens"] += 1
            return None
        built.examples.append({
            "messages": messages, "target": target.text, "label": target.label, "target_source": target.source,
            "question": question.question, "kind": question.kind, "lang": question.lang, "group": question.group,
            "document": question.document, "gold_left_out": bool(left_out), "augmented": question.augmented,
            "sources": [hit.document for hit in evidence.sources], "tokens": tokens})
        return target

    for n, question in enumerate(questions):
        if progress:
            progress(n, len(questions))
        target = one(question, groups_of(""), "")
        if target is not None and target.label == ANSWER and question.document and \
                rng.random() < cfg["no_gold_share"]:
            groups = groups_of(question.document)
            if groups is None:  # all documents visible: leave one out by listing the others
                sources = [d.source for d in assistant.knowledge.store.documents()]
                groups = [document_group(s) for s in sources if s != question.document]
            one(question, groups, question.document)
    return built


def cap_no_answer(examples: list[dict[str, Any]], share: float, seed: int) -> tuple[list[dict], int]:
    """At most `share` of the examples teach the no-answer reply (a seeded choice of which stay)."""
    refusals = [e for e in examples if e["label"] == NO_ANSWER]
    answers = [e for e in examples if e["label"] != NO_ANSWER]
    allowed = int(share * len(answers) / (1 - share)) if share < 1 else len(refusals)
    if len(refusals) <= allowed:
        return examples, 0
    keep = set(map(id, random.Random(seed).sample(refusals, allowed)))
    kept = [e for e in examples if e["label"] != NO_ANSWER or id(e) in keep]
    return kept, len(refusals) - allowed


def _shingles(text: str) -> set[str]:
    compact = re.sub(r"\W+", "", text.lower())
    return {compact[i:i + 3] for i in range(max(1, len(compact) - 2))}


def drop_evaluation_questions(questions: list[Question], held_out: Iterable[str],
                              threshold: float = 0.8) -> tuple[list[Question], list[str]]:
    """Training questions that are (nearly) an evaluation question leave: the model must never have
    seen what it is measured on."""
    held = [_shingles(q) for q in held_out]
    kept, dropped = [], []
    for question in questions:
        mine = _shingles(question.question)
        if any(len(mine & other) / max(1, len(mine | other)) >= threshold for other in held):
            dropped.append(question.question)
        else:
            kept.append(question)
    return kept, dropped


# -- the stage ------------------------------------------------------------------------------------

def evaluation_questions(recipe) -> list[str]:
    """Every question the evaluate stage may ask (golden sets and probes, both halves)."""
    from appliance.answers.golden import load_golden

    cfg = recipe["evaluate"]
    if not cfg["answers"]:
        return []
    paths = [recipe.path(p) for p in (*cfg["answer_golden"], *cfg["answer_probes"])]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:  # never train without knowing what the model will be measured on
        from appliance_build.errors import BuildError

        raise BuildError(f"Evaluation question files not found: {', '.join(missing)}; fix "
                         "evaluate.answer_golden / evaluate.answer_probes in the recipe.")
    return [item.question for path in paths for item in load_golden(path)]


def build_grounded(recipe, validated, embedder_dir, out) -> dict[str, Any]:
    """The stage: train.jsonl (train-split questions, retrieving from train-split documents only)
    and eval.jsonl (eval-split questions, retrieving from every document, as served)."""
    import shutil
    import time

    from rich.console import Console

    from appliance_build import jsonl
    from appliance_build.basemodel import tokenizer_gguf
    from appliance_build.knowledge import assistant_for, open_knowledge
    from appliance_build.training_data import Encoder

    console = Console(stderr=True)
    cfg, seed = recipe["grounded"], recipe["seed"]
    docs = recipe.path(recipe["data"]["docs_dir"])
    train_records = jsonl.read(validated / "train.jsonl")
    eval_records = jsonl.read(validated / "eval.jsonl")
    train_questions = questions_from_records(train_records, docs.name, per_section=cfg["section_questions"], seed=seed)
    eval_questions = questions_from_records(eval_records, docs.name, per_section=1, seed=seed + 1)
    train_questions, leaked = drop_evaluation_questions(train_questions, evaluation_questions(recipe))
    # The eval loss needs a few dozen examples; asking every eval question would only cost time.
    random.Random(seed).shuffle(eval_questions)
    eval_questions = eval_questions[: 3 * cfg["max_eval_examples"]]
    train_documents = sorted({kb_source(r["group"], docs.name) for r in train_records} - {""})

    encoder = Encoder(tokenizer_gguf(recipe))
    end = len(encoder.end_ids)

    def count_tokens(messages, target):
        return len(encoder.chat_ids(messages)) + encoder.count(target) + end

    started = time.perf_counter()
    try:
        with open_knowledge(docs, embedder_dir, out / "kb") as (kb, settings):
            assistant = assistant_for(kb, settings)
            documents = sorted(d.source for d in kb.store.documents())
            visible = [d for d in documents if d in set(train_documents)]
            with console.status("grounded examples") as status:
                def progress(done, total, what="train"):
                    if done % 25 == 0:
                        status.update(f"grounded {what} examples: {done}/{total} questions")

                train = build_examples(assistant, train_questions, visible=visible, settings=settings, cfg=cfg,
                                       seed=seed, count_tokens=count_tokens, progress=progress)
                evaluation = build_examples(assistant, eval_questions, visible=None, settings=settings, cfg=cfg,
                                            seed=seed + 1, count_tokens=count_tokens,
                                            progress=lambda d, t: progress(d, t, "eval"))
    finally:
        encoder.close()
        shutil.rmtree(out / "kb", ignore_errors=True)  # scratch: the appliance builds its own
    seconds = time.perf_counter() - started

    train_rows, capped = cap_no_answer(train.examples, cfg["max_no_answer_share"], seed)
    before_sampling = len(train_rows)
    train_rows = sample_examples(train_rows, cfg["max_train_examples"], cfg["max_train_tokens"], seed)
    eval_rows, _ = cap_no_answer(evaluation.examples, cfg["max_no_answer_share"], seed)
    eval_rows = eval_rows[: cfg["max_eval_examples"]]
    if not train_rows or not eval_rows:
        from appliance_build.errors import BuildError

        raise BuildError(f"The grounded stage made {len(train_rows)} training and {len(eval_rows)} eval examples; "
                         f"both need some. Skipped: {dict(train.skipped)}. Check data.docs_dir and the QA data.")
    jsonl.write(out / "train.jsonl", train_rows)
    jsonl.write(out / "eval.jsonl", eval_rows)
    return {
        "train": describe(train_rows),
        "eval": describe(eval_rows),
        "train_questions": len(train_questions),
        "eval_questions": len(eval_questions),
        "skipped_train": dict(train.skipped),
        "skipped_eval": dict(evaluation.skipped),
        "no_answer_dropped_over_cap": capped,
        "left_out_by_the_size_limits": before_sampling - len(train_rows),
        "evaluation_questions_left_out": len(leaked),
        "evaluation_questions_left_out_examples": leaked[:5],
        "documents": len(documents),
        "train_documents": visible,
        "retrieval_s": round(seconds, 1),
        "samples": [{k: e[k] for k in ("question", "target", "label", "target_source", "sources")}
                    for e in _samples(train_rows, seed)],
    }


def sample_examples(rows: list[dict[str, Any]], max_examples: int, max_tokens: int, seed: int) -> list[dict]:
    """A seeded sample within the limits (0: none), in a seeded order; it stops at the first example
    over a limit, so that the sample keeps the mix of languages and kinds."""
    shuffled = random.Random(seed).sample(rows, len(rows))
    out, tokens = [], 0
    for row in shuffled:
        if (max_examples and len(out) >= max_examples) or (max_tokens and tokens + row["tokens"] > max_tokens):
            break
        out.append(row)
        tokens += row["tokens"]
    return out


def describe(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tokens = sorted(r["tokens"] for r in rows)
    count = lambda key: dict(Counter(str(r[key]) for r in rows))  # noqa: E731
    return {"examples": len(rows), "label": count("label"), "kind": count("kind"), "lang": count("lang"),
            "target_source": count("target_source"), "gold_left_out": count("gold_left_out"),
            "tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else 0,
            "tokens_max": tokens[-1] if tokens else 0, "tokens_total": sum(tokens)}


def _samples(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """One example of each (language, label, target source), for the report."""
    seen, out = set(), []
    for row in random.Random(seed).sample(rows, len(rows)):
        key = (row["lang"], row["label"], row["target_source"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return sorted(out, key=lambda r: (r["lang"], r["label"], r["target_source"]))
