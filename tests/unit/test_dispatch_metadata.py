"""Tests for the dispatch metadata codec."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dispatch.metadata import (
    KNOWN_KEYS,
    MAX_METADATA_BYTES,
    MAX_QUESTION_CHARS,
    cap_question,
    dispatch_metadata,
    encode_metadata,
    parse_dispatch_metadata,
)
from agent.dispatch.plan import DispatchPlan

LOGGER_NAME = "tutor.metadata"

TRICKY_VALUES = [
    "a|b",
    "Time: 3pm",
    "50% of 100",
    "%7C literally",
    "%25%3A%0A",
    "line one\nline two",
    "carriage\rreturn\r\n",
    "tab\there",
    "she said \"hi\" and 'bye'",
    "nul\x00byte",
    "del\x7fchar",
    "caf\u00e9 na\u00efve \u00fcber",
    "\U0001f600\U0001f469\u200d\U0001f52c emoji",
    "",
    "  padded  ",
    "%",
    "%%",
    "%C3%A9",
    "trailing %",
    "\u2028\u0085\x9f",
]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == LOGGER_NAME and record.levelno == logging.WARNING
    ]


# --- encoding -------------------------------------------------------------------------------


def test_encode_preserves_field_order() -> None:
    assert encode_metadata({"session": "abc", "question": "hi", "from": "math"}) == (
        "session:abc|question:hi|from:math"
    )


def test_encode_empty_mapping_is_empty_string() -> None:
    assert encode_metadata({}) == ""


def test_encode_escapes_exactly_the_separators_percent_and_controls() -> None:
    assert encode_metadata({"q": "a%b|c:d\ne\rf\x00g\x7fh\x1f"}) == (
        "q:a%25b%7Cc%3Ad%0Ae%0Df%00g%7Fh%1F"
    )


def test_encode_keeps_quotes_spaces_and_non_ascii() -> None:
    value = 'It\'s "caf\u00e9" \U0001f600 ok?'
    assert encode_metadata({"question": value}) == f"question:{value}"


@pytest.mark.parametrize("key", ["Question", "1st", "a-b", "a b", "", "a:b", "a|b", "_a", "a" * 33])
def test_encode_rejects_bad_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid metadata key") as excinfo:
        encode_metadata({key: "value"})
    assert repr(key) in str(excinfo.value)


def test_encode_accepts_a_32_character_key() -> None:
    key = "k" * 32
    assert parse_dispatch_metadata(encode_metadata({key: "v"})) == {key: "v"}


def test_encode_rejects_non_str_values_naming_the_key() -> None:
    with pytest.raises(ValueError, match="'session'"):
        encode_metadata({"session": 42})  # type: ignore[dict-item]


def test_known_keys_are_all_valid_keys() -> None:
    fields = {key: f"value of {key}" for key in KNOWN_KEYS}
    assert parse_dispatch_metadata(encode_metadata(fields)) == fields


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_round_trip_keeps_tricky_values(value: str) -> None:
    fields = {"session": "abc", "question": value, "student": "s-1"}
    assert parse_dispatch_metadata(encode_metadata(fields)) == fields


def test_round_trip_of_all_tricky_values_together(caplog: pytest.LogCaptureFixture) -> None:
    fields = {f"k{index}": value for index, value in enumerate(TRICKY_VALUES)}
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        parsed = parse_dispatch_metadata(encode_metadata(fields))
    assert parsed == fields
    assert list(parsed) == list(fields)
    assert warnings_of(caplog) == []


# --- legacy (unescaped) form ----------------------------------------------------------------


def test_legacy_plain_form_parses_as_before(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        parsed = parse_dispatch_metadata("session:abc|question:What is a noun?")
    assert parsed == {"session": "abc", "question": "What is a noun?"}
    assert warnings_of(caplog) == []


def test_legacy_percent_not_followed_by_hex_is_kept() -> None:
    assert parse_dispatch_metadata("question:Is 50% a half?") == {"question": "Is 50% a half?"}
    assert parse_dispatch_metadata("question:100%") == {"question": "100%"}
    assert parse_dispatch_metadata("question:%zz and %4") == {"question": "%zz and %4"}


def test_percent_sequences_the_encoder_never_makes_are_kept() -> None:
    assert parse_dispatch_metadata("question:caf%C3%A9 %20 %41") == {
        "question": "caf%C3%A9 %20 %41"
    }


def test_legacy_value_with_colon_inside() -> None:
    assert parse_dispatch_metadata("question:Time: 3pm") == {"question": "Time: 3pm"}
    assert parse_dispatch_metadata("question:a:b:c") == {"question": "a:b:c"}


def test_trailing_separator_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        parsed = parse_dispatch_metadata("session:abc|")
    assert parsed == {"session": "abc"}
    assert warnings_of(caplog) == []


def test_parse_accepts_bytes_and_none() -> None:
    assert parse_dispatch_metadata(b"session:abc|question:caf\xc3\xa9") == {
        "session": "abc",
        "question": "caf\u00e9",
    }
    assert parse_dispatch_metadata(b"session:\xff") == {"session": "\ufffd"}
    assert parse_dispatch_metadata(None) == {}


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("garbage", {}),
        ('{"session": "abc"}', {}),
        ('{"a":1}', {}),
        ("session:abc|quest", {"session": "abc"}),
        ("\x00\xff\xfe|:::", {}),
        ("|||", {}),
        ("session:abc|session:def", {"session": "abc"}),
        ("Session:abc|question:hi", {"question": "hi"}),
        (" session:abc", {}),
        ("session:abc| ", {"session": "abc"}),
    ],
)
def test_malformed_input_returns_readable_fields_and_warns_once(
    text: str, expected: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert parse_dispatch_metadata(text) == expected
    assert len(warnings_of(caplog)) == 1


def test_duplicate_key_keeps_the_first_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        parsed = parse_dispatch_metadata("session:abc|session:def|question:q|session:ghi")
    assert parsed == {"session": "abc", "question": "q"}
    [record] = warnings_of(caplog)
    assert "2 unreadable" in record.getMessage()


def test_valid_input_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        parse_dispatch_metadata(encode_metadata({"session": "abc", "question": "a|b:c%"}))
    assert [record for record in caplog.records if record.name == LOGGER_NAME] == []


def test_warning_shows_only_a_short_preview_of_long_input(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-" + "".join(f"{index % 10}" for index in range(497))
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        parse_dispatch_metadata(f"session:abc|{secret}")
    [record] = warnings_of(caplog)
    message = record.getMessage()
    assert secret not in caplog.text
    assert secret not in message
    assert len(message) < 200
    assert repr(f"session:abc|{secret}"[:80]) in message


def test_parse_of_an_unexpected_type_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert parse_dispatch_metadata(12345) == {}  # type: ignore[arg-type]
    assert len(warnings_of(caplog)) == 1


# --- cap_question ---------------------------------------------------------------------------


def test_cap_question_leaves_short_text_unchanged_after_strip() -> None:
    assert cap_question("What is a noun?") == "What is a noun?"
    assert cap_question("  What is a noun?\n") == "What is a noun?"
    exact = "x" * MAX_QUESTION_CHARS
    assert cap_question(exact) == exact


def test_cap_question_cuts_long_text_on_a_word_boundary() -> None:
    text = " ".join(f"word{index}" for index in range(400))
    capped = cap_question(text)
    assert len(capped) <= MAX_QUESTION_CHARS
    assert len(capped) > MAX_QUESTION_CHARS * 0.8
    assert capped.endswith("\u2026")
    body = capped.removesuffix("\u2026")
    assert text.startswith(body)
    assert text[len(body)] == " "


def test_cap_question_hard_cuts_one_enormous_word() -> None:
    text = "a" * 5000
    assert cap_question(text) == "a" * MAX_QUESTION_CHARS


def test_cap_question_hard_cuts_when_the_only_space_is_too_early() -> None:
    text = "short " + "b" * 2000
    assert cap_question(text, 100) == text[:100]


def test_cap_question_result_never_exceeds_the_limit() -> None:
    text = "ab " * 50
    for limit in range(1, 60):
        assert len(cap_question(text, limit)) <= limit


# --- dispatch_metadata ----------------------------------------------------------------------


def test_dispatch_metadata_drops_none_and_empty_values() -> None:
    assert dispatch_metadata(session="abc", student=None, handover="") == "session:abc"
    assert dispatch_metadata(session="", student="s1", question=None) == "student:s1"
    assert dispatch_metadata(session="abc", question="   ") == "session:abc"


def test_dispatch_metadata_caps_the_question() -> None:
    question = " ".join(f"word{index}" for index in range(1000))
    parsed = parse_dispatch_metadata(dispatch_metadata(session="abc", question=question))
    assert parsed["session"] == "abc"
    assert len(parsed["question"]) <= MAX_QUESTION_CHARS
    assert question.startswith(parsed["question"].removesuffix("\u2026"))


def test_dispatch_metadata_fits_a_worst_case_emoji_question() -> None:
    question = "\U0001f600" * 5000
    encoded = dispatch_metadata(
        session="sess-" + "0" * 36, student="student-" + "1" * 36, question=question
    )
    assert len(encoded.encode("utf-8")) <= MAX_METADATA_BYTES
    parsed = parse_dispatch_metadata(encoded)
    assert parsed["session"] == "sess-" + "0" * 36
    assert question.startswith(parsed["question"])
    assert len(parsed["question"]) > MAX_QUESTION_CHARS * 0.9


def test_dispatch_metadata_fits_a_question_full_of_separators() -> None:
    question = "|" * 5000
    encoded = dispatch_metadata(session="abc", question=question)
    assert len(encoded.encode("utf-8")) <= MAX_METADATA_BYTES
    assert parse_dispatch_metadata(encoded) == {"session": "abc", "question": "|" * 1000}


def test_dispatch_metadata_rejects_oversized_other_fields() -> None:
    with pytest.raises(ValueError, match=str(MAX_METADATA_BYTES)):
        dispatch_metadata(session="s" * MAX_METADATA_BYTES, question="hi")


def test_dispatch_metadata_rejects_bad_keys() -> None:
    with pytest.raises(ValueError, match="'Session'"):
        dispatch_metadata(Session="abc")


# --- properties -----------------------------------------------------------------------------

keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values))
def test_property_parse_inverts_encode(fields: dict[str, str]) -> None:
    parsed = parse_dispatch_metadata(encode_metadata(fields))
    assert parsed == fields
    assert list(parsed) == list(fields)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda raw: raw.decode("utf-8", errors="replace"))))
def test_property_parse_never_raises_on_text(text: str) -> None:
    parsed = parse_dispatch_metadata(text)
    assert isinstance(parsed, dict)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in parsed.items())


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_property_parse_never_raises_on_bytes(raw: bytes) -> None:
    parsed = parse_dispatch_metadata(raw)
    assert isinstance(parsed, dict)
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in parsed.items())


def test_a_dispatch_plan_reads_back_what_it_wrote() -> None:
    plan = DispatchPlan(
        session_id="s-1",
        student="kid-7",
        question="Is 50% a half? | yes: it is",
        handover_id="h-1",
        outgoing="agent-abc",
        tutor="english",
    )
    assert DispatchPlan.from_metadata(plan.to_metadata()) == plan
    assert plan.is_handover


def test_a_plan_back_to_the_orchestrator_keeps_the_returning_sessions_key_on_the_wire() -> None:
    plan = DispatchPlan(session_id="s-1", student="kid-7", returning=True, tutor="orchestrator")
    fields = parse_dispatch_metadata(plan.to_metadata())
    assert fields["return_from_english"] == "s-1"
    assert "session" not in fields
    assert DispatchPlan.from_metadata(plan.to_metadata()) == plan


def test_a_students_plan_is_the_metadata_the_tokens_always_carried() -> None:
    assert (
        DispatchPlan(session_id="s-1", student="kid-7").to_metadata() == "session:s-1|student:kid-7"
    )
    assert DispatchPlan.from_metadata("session:s-1|student:kid-7") == DispatchPlan("s-1", "kid-7")
