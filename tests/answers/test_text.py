from appliance.answers.text import codes, content_units, numbers


def test_amounts_written_differently_are_one_number():
    assert numbers("KRW 30,000,000") == numbers("30000000") == numbers("3천만원") == {"30000000"}
    assert numbers("over 30 million won") == {"30000000"}
    assert numbers("1억5천만원") == {"150000000"}
    assert numbers("5,000만원 초과") == {"50000000"}


def test_a_code_keeps_its_digits_out_of_the_numbers():
    assert numbers("WF-PO-01 within 2 days") == {"2"}
    assert {"PO150", "WF-PO-01", "R3", "HB_PUR_APPROVER"} <= codes("PO150, WF-PO-01, R3 and HB_PUR_APPROVER")


def test_content_units_are_words_and_hangul_bigrams():
    assert content_units("The CFO 승인합니다") == ["cfo", "승인", "인합", "합니", "니다"]
