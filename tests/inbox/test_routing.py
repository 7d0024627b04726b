"""Routing rules: what conditions mean, and which ones are refused."""

from __future__ import annotations

from typing import Any

import pytest

from inbox.routing import InvalidRule, RoutingFacts, matches, message_language, validate_conditions

CHANNELS = ("api", "email", "sms", "webchat", "whatsapp")


def facts(text: str = "", *, channel: str = "email", inbox_id: int = 1,
          language: str | None = None, **attributes: Any) -> RoutingFacts:
    return RoutingFacts(inbox_id=inbox_id, channel=channel, text=text, language=language,
                        contact_attributes=attributes)


def rule(*conditions: dict[str, Any]) -> list[dict[str, Any]]:
    return validate_conditions(conditions, channels=CHANNELS)


def test_keywords_match_whole_words_in_any_case() -> None:
    refund = rule({"field": "keywords", "op": "contains_any", "value": ["Refund", "money back"]})
    assert matches(refund, facts("I want a REFUND."))
    assert matches(refund, facts("give my money\n back"))
    assert not matches(refund, facts("refunds are slow"))
    assert not matches(refund, facts("prerefund"))


def test_language_matches_the_tag_and_its_regions() -> None:
    german = rule({"field": "language", "op": "in", "value": ["de", "pt_BR"]})
    assert matches(german, facts(language="de-CH"))
    assert matches(german, facts(language="en, de"))  # Content-Language may list several
    assert matches(german, facts(language="pt-br"))
    assert not matches(german, facts(language="pt-PT"))
    assert not matches(german, facts(language="dk"))
    assert not matches(german, facts())
    assert message_language({}, {"language": "fr"}) == "fr"
    assert message_language({"language": "de"}, {"language": "fr"}) == "de"


def test_channel_inbox_and_contact_attributes() -> None:
    conditions = rule(
        {"field": "channel", "op": "in", "value": ["email", "sms"]},
        {"field": "inbox", "op": "equals", "value": 3},
        {"field": "contact.plan", "op": "in", "value": ["Gold", "platinum"]},
    )
    assert matches(conditions, facts(channel="sms", inbox_id=3, plan="gold"))
    assert not matches(conditions, facts(channel="whatsapp", inbox_id=3, plan="gold"))
    assert not matches(conditions, facts(channel="sms", inbox_id=4, plan="gold"))
    assert not matches(conditions, facts(channel="sms", inbox_id=3))
    tags = rule({"field": "contact.tags", "op": "contains_any", "value": ["vip"]})
    assert matches(tags, facts(tags=["new", "VIP"]))
    assert matches(tags, facts(tags="a VIP customer"))
    assert not matches(tags, facts(tags="vipers"))
    assert matches(rule(), facts("anything"))  # no conditions: every conversation


@pytest.mark.parametrize(("condition", "words"), [
    ({"field": "mood", "op": "equals", "value": "x"}, "unknown field"),
    ({"field": "contact.", "op": "equals", "value": "x"}, "unknown field"),
    ({"field": "contact.a b", "op": "equals", "value": "x"}, "attribute name"),
    ({"field": "keywords", "op": "in", "value": ["x"]}, "use contains_any"),
    ({"field": "keywords", "op": "contains_any", "value": []}, "non-empty list"),
    ({"field": "keywords", "op": "contains_any", "value": "refund"}, "non-empty list"),
    ({"field": "keywords", "op": "contains_any", "value": [" "]}, "1 to 200"),
    ({"field": "channel", "op": "equals", "value": "fax"}, "unknown channel"),
    ({"field": "channel", "op": "equals", "value": ["sms"]}, "one value"),
    ({"field": "inbox", "op": "in", "value": ["3"]}, "integers"),
    ({"field": "language", "op": "equals", "value": "deutsch!"}, "language tag"),
    ({"field": "channel", "op": "equals", "value": "sms", "extra": 1}, "unknown key"),
    ({"field": "contact.plan", "op": "equals", "value": {"a": 1}}, "one value"),
])
def test_bad_conditions_are_refused_with_the_reason(condition: dict[str, Any],
                                                    words: str) -> None:
    with pytest.raises(InvalidRule, match=words):
        rule(condition)
