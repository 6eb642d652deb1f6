import asyncio

from appliance.answers.generation import VerifiedGeneration
from appliance.answers.modes import EXTRACTIVE, GENERATED, GENERATED_WITH_REMOVALS
from appliance.answers.verify import SentenceBuffer, verify_text
from appliance.llm.base import Finished, Generation, TextDelta

EVIDENCE = """| Release code | Net PO value (KRW) | Final approver |
| R3 | 30,000,001 – 150,000,000 | CFO |
Approvals are sequential: an R3 PO is first released by the Purchasing Team Leader, then by the Head of Procurement, and finally by the CFO."""
QUESTION = "Who approves a purchase order over 30 million won?"


class ScriptedGeneration(Generation):
    """A stand-in for a model's stream that writes exactly the given pieces (the invented
    approval limit below cannot be provoked from the real model on demand)."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.prompt_tokens = 100
        self.cancelled = False

    async def __aiter__(self):
        for piece in self.pieces:
            if self.cancelled:
                yield Finished("cancelled", 100, 0)
                return
            yield TextDelta(piece)
        yield Finished("stop", 100, len(self.pieces))

    def cancel(self):
        self.cancelled = True


def run(generation):
    async def collect():
        return [event async for event in generation]
    return asyncio.run(collect())


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_an_invented_approval_limit_is_cut():
    verifier = verify_text(
        "The CFO gives the final approval [1]. The approval limit for the CFO is KRW 50,000,000 [1].",
        EVIDENCE, QUESTION)
    kept = verifier.kept_text()
    assert "CFO gives the final approval" in kept
    assert "50,000,000" not in kept
    assert [c.reason for c in verifier.checks if not c.kept] == ["number not in the sources: 50000000"]


def test_invented_codes_names_and_a_restated_question_are_cut():
    verifier = verify_text(
        "Who approves a purchase order over 30 million won? Use transaction PO999 [1]. "
        "The headmaster approves it [1]. The CFO approves it last [1].", EVIDENCE, QUESTION)
    reasons = [c.reason for c in verifier.checks if not c.kept]
    assert reasons[0] == "restates the question"
    assert any(r.startswith("code not in the sources: PO999") for r in reasons)
    assert any("supported" in r for r in reasons)  # "headmaster" is nowhere in the evidence
    assert verifier.kept_text().strip() == "The CFO approves it last [1]."


def test_a_stream_sends_verified_sentences_and_drops_the_invented_one():
    inner = ScriptedGeneration(["The CFO ", "gives the final approval [1]. ", "The limit is ",
                                "KRW 50,000,000 [1]. ", "Approvals are sequential [1]."])
    verified = VerifiedGeneration(inner, verify_text("", EVIDENCE, QUESTION), "quoted evidence")
    events = run(verified)
    text = text_of(events)
    assert "50,000,000" not in text and "CFO gives the final approval" in text
    assert verified.answer_mode == GENERATED_WITH_REMOVALS and verified.removed == 1
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "stop"


def test_when_nothing_survives_the_extractive_answer_is_sent():
    inner = ScriptedGeneration(["Please contact the headmaster at ext. 9999."])
    verified = VerifiedGeneration(inner, verify_text("", EVIDENCE, QUESTION), "quoted evidence")
    assert text_of(run(verified)) == "quoted evidence"
    assert verified.answer_mode == EXTRACTIVE


def test_a_loop_is_stopped():
    inner = ScriptedGeneration(["The CFO approves the PO and "] * 40)
    verified = VerifiedGeneration(inner, verify_text("", EVIDENCE, QUESTION), "quoted evidence")
    events = run(verified)
    assert verified.looped and inner.cancelled
    assert text_of(events).count("The CFO approves the PO and") < 3
    assert events[-1].finish_reason == "stop"


def test_a_clean_answer_is_marked_generated():
    inner = ScriptedGeneration(["The CFO gives the final approval [1]."])
    verified = VerifiedGeneration(inner, verify_text("", EVIDENCE, QUESTION), "quoted evidence")
    run(verified)
    assert verified.answer_mode == GENERATED and verified.support == 1.0


def test_sentences_are_handed_out_only_when_they_end():
    buffer = SentenceBuffer()
    assert buffer.feed("The limit is 2.") == []  # "2." may be "2.5"
    assert buffer.feed("5 days. Next") == ["The limit is 2.5 days. "]
    assert buffer.flush() == "Next"
