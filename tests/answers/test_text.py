from appliance.answers.text import codes, content_units, numbers


def test_amounts_written_differently_are_one_number():
    assert numbers("KRW 30,000,000") == numbers("30000000") == numbers("3천만원") == {"30000000"}
    assert numbers("over 30 million won") == {"30000000"}
    assert numbers("1억5천만원") == {"150000000"}
    assert numbers("5,000만원 초과") == {"50000000"}


def test_amounts_said_in_words_are_numbers_too():
    assert numbers("over a thousand dollars") == numbers("$1,000") == {"1000"}
    assert numbers("one million won") == {"1000000"}
    assert numbers("천만 원까지") == numbers("10,000,000원") == {"10000000"}
    assert numbers("백만원") == {"1000000"} and numbers("천 달러") == {"1000"}
    # the same syllables in ordinary words are no amount
    assert numbers("원래 천만에요") == numbers("백만장자") == numbers("하나만 원하면") == set()


def test_a_code_keeps_its_digits_out_of_the_numbers():
    assert numbers("WF-PO-01 within 2 days") == {"2"}
    assert {"PO150", "WF-PO-01", "R3", "HB_PUR_APPROVER"} <= codes("PO150, WF-PO-01, R3 and HB_PUR_APPROVER")


def test_content_units_are_words_and_hangul_bigrams():
    assert content_units("The CFO 승인합니다") == ["cfo", "승인", "인합", "합니", "니다"]
