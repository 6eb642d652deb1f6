"""Text assembly: split UTF-8 characters, stop strings spanning tokens."""

from __future__ import annotations

from appliance.engine.sampling import TextAssembler


def feed_all(assembler, pieces):
    return "".join(assembler.feed(p) for p in pieces)


def test_korean_characters_split_across_tokens_come_out_whole():
    data = "구매 요청".encode()
    assembler = TextAssembler(())
    out = [assembler.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) == "구매 요청"
    assert all("\ufffd" not in piece for piece in out)


def test_stop_string_spanning_tokens_is_cut_and_never_shown():
    assembler = TextAssembler(("<END>",))
    shown = feed_all(assembler, [b"Answer: 42 <E", b"N", b"D> trailing"])
    assert shown == "Answer: 42 "
    assert assembler.stopped


def test_held_back_prefix_is_released_when_it_is_not_a_stop():
    assembler = TextAssembler(("<END>",))
    shown = feed_all(assembler, [b"a <E", b"Nx"]) + assembler.flush()
    assert shown == "a <ENx"
    assert not assembler.stopped


def test_character_cut_by_the_token_limit_is_dropped():
    assembler = TextAssembler(())
    shown = assembler.feed("한".encode()[:2]) + assembler.flush()
    assert shown == ""
