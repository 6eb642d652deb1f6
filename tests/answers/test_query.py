import pytest

from appliance.answers.query import conversation_query, stands_alone
from appliance.knowledge.analyzer import Analyzer


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer()


def chat(*turns):
    messages = []
    for i, turn in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": turn})
    return messages


def test_a_dependent_follow_up_carries_the_topic(analyzer):
    query = conversation_query(chat("How do I get a purchase order approved?", "Open PO150 ...",
                                    "And who approves it when it is over 30 million won?"), analyzer)
    assert query.carried and query.earlier == ("How do I get a purchase order approved?",)
    assert "purchase order approved" in query.text and query.text.count("30 million") == 2


def test_a_topic_change_leaves_the_old_topic_behind(analyzer):
    query = conversation_query(chat("How do I get a purchase order approved?", "Open PO150 ...",
                                    "Now, how do I request annual leave in HR100?"), analyzer)
    assert not query.carried and query.text == "Now, how do I request annual leave in HR100?"


@pytest.mark.parametrize("follow_up", ["한도는 얼마예요?", "취소하려면요?", "그럼 승인은 누가 해요?", "그건 언제까지예요?"])
def test_korean_ellipsis_is_a_follow_up(analyzer, follow_up):
    assert not stands_alone(follow_up, analyzer)
    query = conversation_query(chat("법인카드는 어떻게 신청하나요?", "...", follow_up), analyzer)
    assert query.text.startswith("법인카드는 어떻게 신청하나요?")


def test_a_self_contained_korean_question_stands_alone(analyzer):
    assert stands_alone("재고 실사 차이가 나면 재무팀에 어떻게 보고하나요?", analyzer)


def test_a_three_turn_conversation_walks_back_to_the_topic(analyzer):
    query = conversation_query(chat("How do I record a vendor invoice?", "...", "And how do I pay it?", "...",
                                    "What if it is blocked?"), analyzer)
    assert query.earlier == ("And how do I pay it?", "How do I record a vendor invoice?")
    assert query.text.startswith("How do I record a vendor invoice? And how do I pay it?")


def test_a_lean_reading_carries_the_topic_unless_the_topic_changes(analyzer):
    earlier = ("재직증명서는 온라인으로 바로 발급받을 수 있나요?", "...")
    assert not conversation_query(chat(*earlier, "하루에 몇 장까지 뽑을 수 있어요?"), analyzer).carried
    lean = conversation_query(chat(*earlier, "하루에 몇 장까지 뽑을 수 있어요?"), analyzer, lean=True)
    assert lean.earlier == (earlier[0],) and lean.text.startswith(earlier[0])
    # It names its own topic, so the previous answer's documents are not favoured in its evidence.
    assert lean.leaning and not conversation_query(chat(*earlier, "그건 하루에 몇 장까지요?"), analyzer).leaning
    assert not conversation_query(chat(*earlier, "그리고 다른 건데요, 하루에 몇 장까지 뽑을 수 있어요?"),
                                  analyzer, lean=True).carried
