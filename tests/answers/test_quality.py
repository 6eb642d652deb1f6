from appliance.answers.quality import score_answer

DOC = "Release code R3: 30,000,001 – 150,000,000, final approver CFO. Approvals are sequential."


def score(answer, gold="The CFO approves it (release code R3)."):
    return score_answer(answer, question="Who approves a PO over 30 million?", gold_answer=gold,
                        references=[DOC])


def test_a_quoted_right_answer_is_good():
    result = score("Release code R3: 30,000,001 – 150,000,000, final approver CFO [1]")
    assert result.good and result.faithful and result.covers and not result.invented


def test_a_loop_is_degenerate_and_an_invention_is_unfaithful():
    assert score("The CFO approves it now. " * 4).degenerate
    result = score("The headmaster approves POs of KRW 99,000,000 since 2015 (code ZZ9).")
    assert not result.faithful and set(result.invented) >= {"99000000", "2015", "ZZ9"}


def test_a_restated_question_is_degenerate_and_cannot_find_is_idk():
    assert score("Who approves a PO over 30 million? The CFO, release code R3.").degenerate
    assert score("I could not find anything about this in the knowledge base.").idk


def test_a_decline_invents_nothing():
    from appliance.answers.compose import no_answer

    result = score(no_answer("법인카드 한도는 얼마인가요?"))
    assert result.idk and not result.good and result.invented == ()
