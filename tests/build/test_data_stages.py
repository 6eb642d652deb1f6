"""Contracts of the data stages on small inputs: PII masking, duplicates, bad-data reporting, the split."""

from __future__ import annotations

from appliance_build.augment import augment
from appliance_build.cleaning import clean, mask_pii, normalize
from appliance_build.loading import Loaded, load_chat_logs, load_qa_csv, load_qa_jsonl
from appliance_build.validation import validate


def record(question, answer, group="g", kind="qa"):
    return {"kind": kind, "source": "s", "group": group, "question": question, "answer": answer, "tags": []}


def test_pii_masking_covers_each_kind_and_counts_it():
    from collections import Counter

    counts = Counter()
    text = ("mail kim.minsu@hanbit.co.kr, call 010-4821-7730 or +82-2-555-0199, "
            "RRN 900101-1234567, card 4518-1234-5678-9012, PO 4500012345 and date 2024-05-01 stay")
    masked = mask_pii(text, counts)
    assert "[EMAIL]" in masked and "[PHONE]" in masked and "[RRN]" in masked and "[CARD]" in masked
    assert "hanbit.co.kr" not in masked and "1234567" not in masked and "9012" not in masked
    assert "4500012345" in masked and "2024-05-01" in masked  # order numbers and dates are not PII
    assert counts == {"email": 1, "phone": 2, "rrn": 1, "card": 1}


def test_clean_normalizes_and_removes_exact_and_near_duplicates():
    rows = [
        record("Ｗｈｏ approves   POs?", "The team leader approves POs up to KRW 5,000,000.", "a"),
        record("Who approves POs?", "The team leader approves POs up to KRW 5,000,000.", "b"),
        record("Who approves  POs ?", "The team leader approves POs up to KRW 5,000,000 .", "c"),
        record("연차 신청은?", "HR100에서 신청합니다.", "d"),
    ]
    assert normalize("Ｗｈｏ\u00a0 is\t\there\x07") == "Who is here"
    kept, report = clean(rows, near_threshold=0.8, shingle_size=3)
    assert report["exact_duplicates"] == 1 and report["near_duplicates"] == 1
    assert [r["group"] for r in kept] == ["a", "d"]


def test_bad_lines_are_reported_with_file_and_line(tmp_path):
    chats = tmp_path / "chats.jsonl"
    chats.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
                     '{"messages": [\n{"messages": []}\n[1, 2]\n', encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n", encoding="utf-8")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "q", "answer": "a"}\n{"question": "only"}\nnot json\n', encoding="utf-8")
    out = Loaded()
    load_chat_logs(chats, out, "chats.jsonl")
    load_chat_logs(empty, out, "empty.jsonl")
    load_qa_csv(wrong, out, "wrong.csv")
    load_qa_jsonl(qa, out, "qa.jsonl")
    where = {(p["file"].rsplit("/", 1)[-1], p["line"]) for p in out.problems}
    assert where == {("chats.jsonl", 2), ("chats.jsonl", 3), ("chats.jsonl", 4), ("empty.jsonl", None),
                     ("wrong.csv", 1), ("qa.jsonl", 2), ("qa.jsonl", 3)}
    assert len(out.records) == 2
    assert all(p["reason"] for p in out.problems)


def test_augment_is_seeded_and_tags_rows():
    rows = [record("How do I reset my password?", "Use SY200."), record("연차 신청은 어떻게 하나요?", "HR100.")]
    first, report = augment(rows, seed=7, variants=1)
    second, _ = augment(rows, seed=7, variants=1)
    assert first == second and report["augmented"] == 2
    assert [r["tags"] for r in first[2:]] == [["augmented"], ["augmented"]]


def test_split_is_grouped_and_drops_are_explained():
    rows = [record(f"question {i} about POs", f"answer {i // 3} with detail", group=f"g{i // 3}") for i in range(30)]
    rows += [record("empty one", " "), record("안녕하세요 질문", "답변입니다", "ko"), record("12345", "67890", "num")]
    train, evaluation, report = validate(rows, count_tokens=lambda t: len(t.split()), max_tokens=64,
                                         min_answer_chars=2, languages=["en", "ko"], eval_fraction=0.2, seed=1)
    assert not {r["group"] for r in train} & {r["group"] for r in evaluation}
    assert report["shared_groups"] == 0 and evaluation
    assert report["dropped"]["empty answer"] == 1
    assert report["dropped"]["language unknown not in ['en', 'ko']"] == 1
