"""The catalog loader: the example loads, and every class of mistake is
reported with its file, line and field path."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import yaml

from decision.catalog import (
    Catalog,
    Offer,
    QuietHours,
    check_catalog,
    load_catalog,
    parse_duration,
)
from decision.domain import Candidate
from decision.errors import CatalogError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "catalog.yaml"
BAD = Path(__file__).resolve().parent / "data" / "catalogs"

# A small valid catalog; each test breaks one thing in it.
BASE = """\
version: 1
channels:
  - id: web
  - id: app
  - id: email
    outbound: true
    quiet_hours: "21:00-08:00"
    min_delay: 24h
offers:
  - id: upgrade
    value: 10
    contents:
      - {id: upgrade_web, channel: web}
      - {id: upgrade_email, channel: email}
  - id: brand
    contents:
      - {id: brand_web, channel: web}
      - {id: brand_app, channel: app}
placements:
  - id: hero
    channels: [web, app]
    fallback: {offer: brand, content: brand_web}
    reward: {events: {click: 1}}
"""


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(CatalogError) as info:
        load_catalog(path, **kwargs)
    assert check_catalog(path, **kwargs) == info.value.errors
    return info.value.errors


def one_error(tmp_path: Path, text: str, **kwargs) -> tuple[Path, str]:
    path = write(tmp_path, text)
    errors = errors_of(path, **kwargs)
    assert len(errors) == 1, errors
    return path, errors[0]


# --- the example ------------------------------------------------------------


def test_example_loads():
    catalog = load_catalog(EXAMPLE)
    assert list(catalog.channels) == ["web", "app", "email", "sms", "push", "callcenter"]
    assert {"home_hero", "product_banner", "callcenter_next", "outbound_daily"} <= set(catalog.placements)
    assert len(catalog.offers) >= 8
    assert catalog.version == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()[:16]

    sms = catalog.channels["sms"]
    assert sms.outbound and sms.unknown_consent == "deny"
    assert sms.quiet_hours == QuietHours(21 * 60, 8 * 60)
    assert catalog.channels["email"].min_delay_s == 86_400
    assert catalog.channels["callcenter"].unknown_consent == "allow"

    hero = catalog.placements["home_hero"]
    assert [(a.name, a.policy) for a in hero.arms] == [
        ("champion", "vw_champion"),
        ("holdout", "uniform"),
        ("baseline", "fixed_priority"),
    ]
    assert [a.share for a in hero.arms] == pytest.approx([0.8, 0.1, 0.1])
    assert catalog.policies["vw_champion"].kind == "vw"
    assert catalog.policies["vw_champion"].params["exploration"] == "squarecb"
    # every arm's policy can be looked up
    for placement in catalog.placements.values():
        assert placement.reward.events
        for arm in placement.arms:
            assert arm.policy in catalog.policies

    cart = catalog.offers["cart_reminder"]
    assert "purchased_since_abandon(events)" in cart.eligibility.text
    assert cart.eligibility.compiled is None  # no rules engine given
    retention = catalog.offers["retention_call_back"]
    assert retention.purpose == "service"
    person_caps = {(c.scope, c.channels, c.limit, c.window_s) for c in catalog.person_caps}
    assert ("person", ("email", "sms", "push"), 3, 7 * 86_400) in person_caps


def test_check_catalog_is_empty_for_the_example():
    assert check_catalog(EXAMPLE) == []


def test_example_rules_are_valid_cel():
    celpy = pytest.importorskip("celpy")
    env = celpy.Environment()
    catalog = load_catalog(EXAMPLE, compile_rule=env.compile)
    rules = [o.eligibility for o in catalog.offers.values()]
    rules += [c.eligibility for c in catalog.contents.values()]
    rules += [p.eligibility for p in catalog.placements.values()]
    rules = [r for r in rules if r is not None]
    assert len(rules) >= 10
    assert all(r.compiled is not None for r in rules)


def test_rules_keep_their_line_and_compiled_form(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    eligibility: '\"paying\" in segments'\n")
    catalog = load_catalog(write(tmp_path, text), compile_rule=lambda source: ("compiled", source))
    rule = catalog.offers["upgrade"].eligibility
    assert rule.text == '"paying" in segments'
    assert rule.line == line_of(text, "eligibility")
    assert rule.compiled == ("compiled", '"paying" in segments')


# --- derived data -----------------------------------------------------------


def test_candidates_follow_catalog_order_offers_and_channels(tmp_path):
    text = (
        BASE
        + """\
  - id: mail
    channels: [email, app]
    offers: [brand, upgrade]
    reward: {events: {click: 1}}
"""
    )
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.candidates["hero"] == (
        Candidate("upgrade", "upgrade_web", "web"),
        Candidate("brand", "brand_web", "web"),
        Candidate("brand", "brand_app", "app"),
    )
    # catalog order, not the placement's list order
    assert catalog.candidates["mail"] == (
        Candidate("upgrade", "upgrade_email", "email"),
        Candidate("brand", "brand_app", "app"),
    )
    assert set(catalog.contents) == {"upgrade_web", "upgrade_email", "brand_web", "brand_app"}
    assert catalog.contents["brand_app"].offer_id == "brand"


def test_policy_shorthand_and_defaults(tmp_path):
    text = (
        BASE
        + """\
  - id: mail
    channels: [email]
    policy: uniform
    reward: {events: {click: 1}}
"""
    )
    catalog = load_catalog(write(tmp_path, text))
    hero, mail = catalog.placements["hero"], catalog.placements["mail"]
    # no policy given: fixed_priority, as one arm
    assert [(a.name, a.policy, a.share) for a in hero.arms] == [("default", "fixed_priority", 1.0)]
    assert [(a.name, a.policy, a.share) for a in mail.arms] == [("default", "uniform", 1.0)]
    # built-in kinds used by name become policies of their own
    assert catalog.policies["uniform"].kind == "uniform"
    assert catalog.policies["fixed_priority"].kind == "fixed_priority"
    assert hero.salt == "hero" and hero.max_items == 1 and hero.offers is None
    assert hero.reward.window_s == 86_400 and hero.reward.range == (0.0, 1.0)
    assert catalog.offers["brand"].name == "brand"
    assert catalog.offers["brand"].purpose == "marketing"
    assert catalog.channels["web"].unknown_consent == "allow"
    assert catalog.channels["email"].unknown_consent == "deny"


def test_fallback_content_defaults_to_the_first_on_the_placement(tmp_path):
    text = edit(BASE, "fallback: {offer: brand, content: brand_web}", "fallback: {offer: brand}")
    text = edit(text, "channels: [web, app]", "channels: [app]")
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.placements["hero"].fallback_content == "brand_app"


def test_dates_durations_and_arm_shares_are_normalised(tmp_path):
    text = edit(
        BASE,
        "    value: 10\n",
        "    value: 10\n    valid_from: 2026-01-01\n    valid_until: '2026-01-31T12:00:00+01:00'\n",
    )
    text = edit(
        text,
        "    fallback:",
        "    arms:\n      - {name: a, policy: uniform, share: 3}\n      - {name: b, policy: fixed_priority}\n"
        "    fallback:",
    )
    catalog = load_catalog(write(tmp_path, text))
    offer = catalog.offers["upgrade"]
    assert offer.valid_from_ms == 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assert offer.valid_until_ms == 1_767_225_600_000 + (30 * 24 + 11) * 3_600_000
    assert [a.share for a in catalog.placements["hero"].arms] == [0.75, 0.25]


def test_a_bare_valid_until_date_includes_the_whole_day(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    valid_until: 2026-01-01\n")
    offer = load_catalog(write(tmp_path, text)).offers["upgrade"]
    assert offer.valid_until_ms == 1_767_225_600_000 + 86_400_000


def test_catalog_is_immutable():
    catalog = load_catalog(EXAMPLE)
    offer = catalog.offers["premium_upgrade"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        offer.value = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.version = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        catalog.offers["new"] = offer  # type: ignore[index]
    with pytest.raises(TypeError):
        offer.attributes["kind"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        catalog.policies["vw_champion"].params["exploration"] = "epsilon"  # type: ignore[index]
    with pytest.raises(TypeError):
        catalog.placements["home_hero"].reward.events["click"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        catalog.candidates["home_hero"] = ()  # type: ignore[index]
    assert isinstance(catalog.policies["vw_champion"].params["interactions"], tuple)
    assert isinstance(offer.contents, tuple) and isinstance(offer.caps, tuple)
    assert isinstance(catalog, Catalog) and isinstance(offer, Offer)


# --- every class of error ----------------------------------------------------


def test_duplicate_ids_name_both_lines():
    path = BAD / "duplicate_ids.yaml"
    text = path.read_text()
    assert errors_of(path) == [
        f"{path}:5: channels[web].id: duplicate channel id 'web' (first defined at line 4)",
        f"{path}:8: policies[explore].name: duplicate policy name 'explore' (first defined at line 7)",
        f"{path}:13: offers[upgrade].id: duplicate offer id 'upgrade' (first defined at line 10)",
        f"{path}:15: offers[upgrade].contents[hero].id: duplicate content id 'hero' (first defined at line 12)",
        f"{path}:21: placements[home].arms[a].name: duplicate arm name 'a' (first defined at line 20)",
        f"{path}:23: placements[home].id: duplicate placement id 'home' (first defined at line 17)",
    ]
    assert line_of(text, "repeated content") == 15


def test_dangling_references():
    path = BAD / "dangling_refs.yaml"
    errors = errors_of(path)
    assert errors == [
        f"{path}:8: pressure[0].channel: unknown channel 'emial' (did you mean 'email'?)",
        f"{path}:12: offers[upgrade].caps[0].channel: unknown channel 'sms' (known: web, email)",
        f"{path}:15: offers[upgrade].contents[upgrade_fax].channel: unknown channel 'fax' (known: web, email)",
        f"{path}:18: placements[home].channels[1]: unknown channel 'app' (known: web, email)",
        f"{path}:19: placements[home].offers[1]: unknown offer 'downgrade' (did you mean 'upgrade'?)",
        f"{path}:20: placements[home].policy: unknown policy 'champion' (known: uniform, fixed_priority)",
        f"{path}:21: placements[home].fallback.offer: unknown offer 'brand' (known: upgrade)",
        f"{path}:24: placements[mail].channels: no offer has a content on these channels (email)",
        f"{path}:26: placements[mail].arms[a].policy: unknown policy 'vw_champion' (known: uniform, fixed_priority)",
        f"{path}:27: placements[mail].fallback.content: unknown content 'nothing_here' (known: upgrade_web)",
    ]


def test_unknown_keys_suggest_the_likely_one():
    path = BAD / "unknown_keys.yaml"
    assert errors_of(path) == [
        f"{path}:3: chanels: unknown key 'chanels' (did you mean 'channels'?)",
        f"{path}:6: channels[web].quiet_hour: unknown key 'quiet_hour' (did you mean 'quiet_hours'?)",
        f"{path}:9: offers[upgrade].valeu: unknown key 'valeu' (did you mean 'value'?)",
        # no "window: required" on top: the typo already says it
        f"{path}:11: offers[upgrade].caps[0].windw: unknown key 'windw' (did you mean 'window'?)",
        f"{path}:13: offers[upgrade].contents[upgrade_web].tempalte: unknown key 'tempalte' (did you mean 'template'?)",
        f"{path}:17: placements[home].reward.widnow: unknown key 'widnow' (did you mean 'window'?)",
    ]


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path):
    text = edit(BASE, "    min_delay: 24h\n", "    min_delay: 24h\n    colour: red\n")
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'colour')}: channels[email].colour: unknown key 'colour' "
        "(known: id, outbound, unknown_consent, quiet_hours, min_delay)"
    )


def test_duplicate_yaml_key(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    value: 12\n")
    path, error = one_error(tmp_path, text)
    first = line_of(text, "value: 10")
    assert error == f"{path}:{first + 1}: offers[upgrade].value: duplicate key (first at line {first})"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("30x", "expected a duration like '30d', '24h', '90m', '45s', '1w' or whole seconds, got '30x'"),
        ("0s", "a duration must be positive, got '0s'"),
        ("-5", "a duration must be positive, got -5"),
        ("1.5", "expected a duration like '30d', '24h', '90m', '45s', '1w' or whole seconds, got 1.5"),
        ("true", "expected a duration like '30d', '24h', '90m', '45s', '1w' or whole seconds, got True"),
    ],
)
def test_bad_duration(tmp_path, written, message):
    text = edit(BASE, "min_delay: 24h", f"min_delay: {written}")
    path, error = one_error(tmp_path, text)
    assert error == f"{path}:{line_of(text, 'min_delay')}: channels[email].min_delay: {message}"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30d", 2_592_000),
        ("24h", 86_400),
        ("90m", 5_400),
        ("45s", 45),
        ("1w", 604_800),
        ("1h30m", 5_400),
        (3600, 3600),
        ("3600", 3600),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "d", "1y", "h1", "1 h", "0", 0, -1, 1.0, True, None, "1h-30m"])
def test_parse_duration_refuses(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ('"21h-08h"', "expected 'HH:MM-HH:MM' such as '21:00-08:00', got '21h-08h'"),
        ('"24:00-08:00"', "'24:00-08:00': times must lie within 00:00..23:59"),
        ('"21:00-08:60"', "'21:00-08:60': times must lie within 00:00..23:59"),
        ('"08:00-08:00"', "'08:00-08:00': start and end are the same time"),
        ("[21, 8]", "expected a string, got a list"),
    ],
)
def test_bad_quiet_hours(tmp_path, written, message):
    text = edit(BASE, 'quiet_hours: "21:00-08:00"', f"quiet_hours: {written}")
    path, error = one_error(tmp_path, text)
    assert error == f"{path}:{line_of(text, 'quiet_hours')}: channels[email].quiet_hours: {message}"


def test_quiet_hours_may_wrap_midnight_or_not(tmp_path):
    text = edit(BASE, 'quiet_hours: "21:00-08:00"', 'quiet_hours: "12:30-14:00"')
    assert load_catalog(write(tmp_path, text)).channels["email"].quiet_hours == QuietHours(750, 840)


def test_bad_date_order(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    valid_from: 2026-03-01\n    valid_until: 2026-02-01\n")
    path, error = one_error(tmp_path, text)
    expected_line = line_of(text, "valid_until")
    assert error == (
        f"{path}:{expected_line}: offers[upgrade].valid_until: must be after valid_from (line {expected_line - 1})"
    )


def test_bad_date(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    valid_from: 2026-13-45\n")
    path, error = one_error(tmp_path, text)
    assert error.startswith(f"{path}:{line_of(text, 'valid_from')}: offers[upgrade].valid_from: expected an ISO date")


def test_yaml_syntax_error():
    path = BAD / "syntax_error.yaml"
    [error] = errors_of(path)
    # the rest of the message is the YAML parser's own (libyaml or PyYAML)
    assert error.startswith(f"{path}:7: syntax error: while parsing a flow sequence (started at line 6): ")
    assert "expected ',' or ']'" in error


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert errors_of(path) == [f"{path}: cannot read the catalog: No such file or directory"]


def test_empty_file_and_wrong_top_level(tmp_path):
    path = write(tmp_path, "# nothing yet\n")
    assert errors_of(path) == [f"{path}:1: (top level): empty file: a catalog starts with 'version: 1'"]
    path = write(tmp_path, "- version: 1\n")
    assert errors_of(path) == [f"{path}:1: (top level): expected a mapping, got a list"]


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1 # caf\xe9\n".encode("latin-1"))
    [error] = errors_of(path)
    assert error.startswith(f"{path}: not UTF-8 text")


def test_version_is_required_and_must_be_1(tmp_path):
    path, error = one_error(tmp_path, edit(BASE, "version: 1\n", ""))
    assert error == f"{path}:1: version: required field is missing"
    path, error = one_error(tmp_path, edit(BASE, "version: 1", "version: 2"))
    assert error == f"{path}:1: version: unsupported catalog format 2 (this service reads version 1)"


@pytest.mark.parametrize(
    ("share", "message"),
    [
        ("0", "a share must be positive, got 0"),
        ("-1", "a share must be positive, got -1"),
        (".inf", "expected a finite number, got inf"),
        ("lots", "expected a number, got the string 'lots'"),
    ],
)
def test_bad_arm_share(tmp_path, share, message):
    text = edit(
        BASE,
        "    fallback:",
        f"    arms:\n      - {{name: a, policy: uniform, share: {share}}}\n      - {{name: b, policy: uniform}}\n"
        "    fallback:",
    )
    path, error = one_error(tmp_path, text)
    assert error == f"{path}:{line_of(text, 'name: a')}: placements[hero].arms[a].share: {message}"


def test_policy_and_arms_together(tmp_path):
    text = edit(
        BASE, "    fallback:", "    policy: uniform\n    arms:\n      - {name: a, policy: uniform}\n    fallback:"
    )
    path, error = one_error(tmp_path, text)
    assert error == f"{path}:{line_of(text, 'arms:')}: placements[hero].arms: give either policy or arms, not both"


def test_fallback_content_not_on_the_placement_channels(tmp_path):
    text = edit(
        BASE, "fallback: {offer: brand, content: brand_web}", "fallback: {offer: upgrade, content: upgrade_email}"
    )
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'fallback')}: placements[hero].fallback.content: content 'upgrade_email' "
        "is on channel 'email', not on one of this placement's channels (web, app)"
    )


def test_fallback_content_of_another_offer(tmp_path):
    text = edit(BASE, "fallback: {offer: brand, content: brand_web}", "fallback: {offer: upgrade, content: brand_web}")
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'fallback')}: placements[hero].fallback.content: "
        "content 'brand_web' belongs to offer 'brand', not to the fallback offer 'upgrade'"
    )


def test_compile_rule_errors_carry_message_and_column(tmp_path):
    class RuleSyntaxError(Exception):
        def __init__(self, message: str, column: int) -> None:
            super().__init__(message)
            self.column = column

    def compile_rule(text: str) -> object:
        if "((" in text:
            raise RuleSyntaxError("unbalanced parenthesis", column=text.index("((") + 1)
        return text

    text = edit(BASE, "{id: brand_app, channel: app}", "{id: brand_app, channel: app, eligibility: 'local_hour > 8'}")
    text = edit(text, "    value: 10\n", "    value: 10\n    eligibility: 'a && ((b'\n")
    path, error = one_error(tmp_path, text, compile_rule=compile_rule)
    assert error == (
        f"{path}:{line_of(text, 'a && ((b')}: offers[upgrade].eligibility: invalid rule: unbalanced parenthesis (column 6)"
    )


class PositionedRuleError(Exception):
    """Like the rules engine's: a message, and a line and column inside the rule."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column


def fail_on_second_line(text: str) -> object:
    if "oops" in text:
        raise PositionedRuleError("unknown function 'oops'", line=2, column=4)
    return text


def test_rule_error_in_a_literal_block_points_at_its_file_line(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    eligibility: |\n      true &&\n      oops()\n")
    path, error = one_error(tmp_path, text, compile_rule=fail_on_second_line)
    assert error == (
        f"{path}:{line_of(text, 'oops()')}: offers[upgrade].eligibility: "
        "invalid rule: unknown function 'oops' (column 4)"
    )


def test_rule_error_in_a_folded_rule_names_the_rule_line(tmp_path):
    text = edit(BASE, "    value: 10\n", "    value: 10\n    eligibility: >-\n      true &&\n\n      oops()\n")
    path, error = one_error(tmp_path, text, compile_rule=fail_on_second_line)
    assert error == (
        f"{path}:{line_of(text, 'true &&')}: offers[upgrade].eligibility: "
        "invalid rule: unknown function 'oops' (line 2 of the rule, column 4)"
    )


def test_a_rule_text_is_compiled_once_and_each_place_it_fails_is_named(tmp_path):
    compiled_texts = []

    def compile_rule(text: str) -> object:
        compiled_texts.append(text)
        return fail_on_second_line(text)

    text = edit(BASE, "{id: brand_app, channel: app}", "{id: brand_app, channel: app, eligibility: 'true && oops()'}")
    text = edit(text, "    value: 10\n", "    value: 10\n    eligibility: 'true && oops()'\n")
    path = write(tmp_path, text)
    errors = errors_of(path, compile_rule=compile_rule)
    assert compiled_texts.count("true && oops()") == 2  # once per load: errors_of loads and checks
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:{n}" for n in sorted(
        {line_of(text, "    eligibility: 'true && oops()'"), line_of(text, "channel: app, eligibility")})]

    good = edit(BASE, "{id: brand_app, channel: app}", "{id: brand_app, channel: app, eligibility: 'true'}")
    good = edit(good, "    value: 10\n", "    value: 10\n    eligibility: 'true'\n")
    catalog = load_catalog(write(tmp_path, good), compile_rule=lambda t: [t])
    rules = [catalog.offers["upgrade"].eligibility, catalog.contents["brand_app"].eligibility]
    assert rules[0].compiled is rules[1].compiled and rules[0].line != rules[1].line


def test_example_compiles_with_the_rules_engine():
    pytest.importorskip("cel", reason="the rules engine's CEL library is not installed")
    from decision.rules import compile_rule

    assert check_catalog(EXAMPLE, compile_rule=compile_rule) == []


def test_compile_rule_errors_from_cel(tmp_path):
    celpy = pytest.importorskip("celpy")
    text = edit(BASE, "{id: brand_app, channel: app}", "{id: brand_app, channel: app, eligibility: 'a && (b'}")
    path, error = one_error(tmp_path, text, compile_rule=celpy.Environment().compile)
    assert error.startswith(
        f"{path}:{line_of(text, 'a && (b')}: offers[brand].contents[brand_app].eligibility: invalid rule:"
    )
    assert error.endswith("(column 7)")


def test_all_errors_are_reported_at_once_sorted_by_line(tmp_path):
    text = edit(BASE, "min_delay: 24h", "min_delay: soon")
    text = edit(text, "    value: 10\n", "    value: ten\n")
    text = edit(text, "{id: brand_app, channel: app}", "{id: brand_app, channel: fax}")
    text = edit(text, "reward: {events: {click: 1}}", "reward: {events: {click: 1}, range: [1, 0]}")
    errors = errors_of(write(tmp_path, text))
    fields = [e.split(": ")[1] for e in errors]
    assert fields == [
        "channels[email].min_delay",
        "offers[upgrade].value",
        "offers[brand].contents[brand_app].channel",
        "placements[hero].reward.range",
    ]
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == sorted(lines)


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "  - id: app\n",
            "  - id: app\n  - id: Web\n",
            "channels[2].id",
            "invalid id 'Web': use 1-64 characters among a-z 0-9 _ . - starting with a letter, a digit or _",
        ),
        (
            "{id: brand_app, channel: app}",
            "{id: 42, channel: app}",
            "offers[brand].contents[1].id",
            "expected an id, got the number 42 (quote it to make it a string)",
        ),
        ("outbound: true", "outbound: yes", "channels[email].outbound", "expected true or false, got the string 'yes'"),
        ("value: 10", "value: .nan", "offers[upgrade].value", "expected a finite number, got nan"),
        ("value: 10", "value: [10]", "offers[upgrade].value", "expected a number, got a list"),
        ("channels: [web, app]", "channels: web", "placements[hero].channels", "expected a list, got the string 'web'"),
        (
            "channels: [web, app]",
            "channels: [web, web]",
            "placements[hero].channels[1]",
            "'web' is listed twice (also at [0])",
        ),
        (
            "channels: [web, app]",
            "channels: [web, app]\n    max_items: 0",
            "placements[hero].max_items",
            "must be at least 1, got 0",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {click: 2}}",
            "placements[hero].reward.events.click",
            "2 is outside range [0, 1]",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {click: value}, window: 0}",
            "placements[hero].reward.window",
            "a duration must be positive, got 0",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {click: revenue}}",
            "placements[hero].reward.events.click",
            "expected a number, 'value' or 'offer_value', got the string 'revenue'",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {buy: offer_value}}",
            "placements[hero].reward.events.buy",
            "offer values outside range [0, 1]: upgrade (10)",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {click: 1}, default: 2}",
            "placements[hero].reward.default",
            "2 is outside range [0, 1]",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {click: 1}, range: [0]}",
            "placements[hero].reward.range",
            "expected [low, high], got 1 values",
        ),
        (
            "reward: {events: {click: 1}}",
            "reward: {events: {}}",
            "placements[hero].reward.events",
            "expected a mapping of event type: reward with at least one event, got a mapping",
        ),
    ],
)
def test_wrong_values(tmp_path, old, new, field, message):
    text = edit(BASE, old, new)
    path, error = one_error(tmp_path, text)
    first_line = new.splitlines()[-1].strip()
    assert error == f"{path}:{line_of(text, first_line)}: {field}: {message}"


def test_caps_budget_and_suppression(tmp_path):
    text = edit(
        BASE,
        "    value: 10\n",
        "    value: 10\n"
        "    caps:\n"
        "      - {limit: 1, window: 1d}\n"
        "      - {scope: offer_channel, limit: 2, window: 1w, channel: email}\n"
        "    budget: {total: 100}\n"
        "    suppression: {after_ignored: 3, window: 14d}\n",
    )
    text = edit(text, "offers:\n", "pressure:\n  - {limit: 3, window: 1w, channels: [email]}\noffers:\n")
    catalog = load_catalog(write(tmp_path, text))
    offer = catalog.offers["upgrade"]
    assert [(c.scope, c.limit, c.window_s, c.channel, c.channels) for c in offer.caps] == [
        ("offer", 1, 86_400, None, ()),
        ("offer_channel", 2, 604_800, "email", ("email",)),
    ]
    assert (offer.budget.total, offer.budget.per_day) == (100, None)
    assert (offer.suppression.after_ignored, offer.suppression.window_s) == (3, 14 * 86_400)
    [person] = catalog.person_caps
    assert (person.scope, person.channel, person.channels) == ("person", "email", ("email",))


def test_cap_scope_is_checked_per_section(tmp_path):
    text = edit(BASE, "offers:\n", "pressure:\n  - {scope: offer, limit: 3, window: 1w}\noffers:\n")
    path, error = one_error(tmp_path, text)
    assert (
        error
        == f"{path}:{line_of(text, 'scope: offer')}: pressure[0].scope: expected one of person, channel, got 'offer'"
    )


def test_unknown_policy_kind_and_policy_validator(tmp_path):
    text = edit(
        BASE,
        "offers:\n",
        "policies:\n"
        "  - name: champion\n"
        "    kind: vw\n"
        "    params:\n"
        "      exploration: sqarecb\n"
        "      epsilon: 0.1\n"
        "  - {name: other, kind: thompson}\n"
        "offers:\n",
    )

    def validate(kind, params):
        assert kind == "vw" and params["epsilon"] == 0.1
        return [
            "exploration: unknown exploration 'sqarecb'",
            "params.epsilon: not used by exploration 'sqarecb'",  # the bandits registry's form
            "the options do not fit together",
        ]

    path = write(tmp_path, text)
    assert errors_of(path, validate_policy=validate) == [
        f"{path}:{line_of(text, 'params')}: policies[champion].params: the options do not fit together",
        f"{path}:{line_of(text, 'exploration')}: policies[champion].params.exploration: unknown exploration 'sqarecb'",
        f"{path}:{line_of(text, 'epsilon')}: policies[champion].params.epsilon: not used by exploration 'sqarecb'",
        (
            f"{path}:{line_of(text, 'thompson')}: policies[other].kind: unknown policy kind 'thompson' "
            "(known: fixed_priority, uniform, vw)"
        ),
    ]
    # a registry that knows the kind accepts it
    assert (
        load_catalog(path, policy_kinds={"vw", "thompson", "uniform", "fixed_priority"}).policies["other"].kind
        == "thompson"
    )


def test_example_policies_pass_the_bandits_registry():
    pytest.importorskip("vowpalwabbit", reason="the VW policies' validator needs vowpalwabbit")
    from bandits.registry import KINDS, validate_params

    assert check_catalog(EXAMPLE, policy_kinds=KINDS, validate_policy=validate_params) == []


def test_offer_listed_on_a_placement_without_content_there(tmp_path):
    text = (
        BASE + "  - id: mail\n    channels: [email]\n    offers: [upgrade, brand]\n    reward: {events: {click: 1}}\n"
    )
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'offers: [upgrade, brand]')}: placements[mail].offers[1]: "
        "offer 'brand' has no content on this placement's channels (email)"
    )


def test_attributes_must_be_flat_scalars(tmp_path):
    text = edit(BASE, "{id: upgrade_web, channel: web}", "{id: upgrade_web, channel: web, attributes: {tone: {a: 1}}}")
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'tone')}: offers[upgrade].contents[upgrade_web].attributes.tone: "
        "expected a string, number or boolean, got a mapping"
    )


def test_yaml_anchors_and_merge_keys_are_supported(tmp_path):
    text = edit(BASE, "reward: {events: {click: 1}}", "reward: &clicks {events: {click: 1}, window: 1h}")
    text += "  - id: app_card\n    channels: [app]\n    reward:\n      <<: *clicks\n      window: 2h\n"
    catalog = load_catalog(write(tmp_path, text))
    assert catalog.placements["app_card"].reward.events == {"click": 1.0}
    assert catalog.placements["app_card"].reward.window_s == 7_200
    assert catalog.placements["hero"].reward.window_s == 3_600


def test_no_mutation_of_the_example_crashes_the_loader(tmp_path):
    """Any line removed or any value replaced: a catalog or a CatalogError,
    never another exception."""
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    path = tmp_path / "mutated.yaml"
    # Every third line, one wrong value each: broad enough, and quick.
    variants = [lines[:i] + lines[i + 1 :] for i in range(0, len(lines), 3)]
    for i in range(1, len(lines), 3):
        if ":" in lines[i] and not lines[i].lstrip().startswith("#"):
            key = lines[i][: lines[i].index(":") + 1]
            wrong = ("[]", "{a: 1}", "-1", "x")[i % 4]
            variants.append([*lines[:i], f"{key} {wrong}\n", *lines[i + 1 :]])
    for variant in variants:
        path.write_text("".join(variant))
        try:
            load_catalog(path)
        except CatalogError as e:
            assert e.errors and all(err.startswith(str(path)) for err in e.errors)


def test_scalars_follow_yaml_1_2(tmp_path):
    text = edit(
        BASE, "    value: 10\n", "    value: 10\n    attributes: {country: NO, zip: 02134, flag: true, n: 1e3}\n"
    )
    attributes = load_catalog(write(tmp_path, text)).offers["upgrade"].attributes
    assert dict(attributes) == {"country": "NO", "zip": "02134", "flag": True, "n": 1000.0}
    # PyYAML's own loaders are left as they were
    assert yaml.safe_load("a: NO") == {"a": False}


# --- learning: apprentice arms and learn_from --------------------------------

LEARNING = edit(
    BASE,
    "offers:\n",
    "policies:\n"
    "  - {name: champion, kind: vw}\n"
    "offers:\n",
)


def _arms(text: str, arms: str) -> str:
    return edit(text, "    fallback:", "    arms:\n" + arms + "    fallback:")


def test_apprentice_arm_and_learn_from(tmp_path):
    text = _arms(
        LEARNING,
        "      - name: champion\n"
        "        policy: champion\n"
        "        apprentice: {baseline: fixed_priority, until: ope, min_examples: 500}\n"
        "      - {name: holdout, policy: uniform, share: 0.2}\n",
    )
    text = edit(text, "    reward:", "    learn_from: all_arms\n    reward:")
    catalog = load_catalog(write(tmp_path, text))
    hero = catalog.placements["hero"]
    assert hero.learn_from == "all_arms"
    champion, holdout = hero.arms
    assert champion.apprentice is not None
    assert (champion.apprentice.baseline, champion.apprentice.until, champion.apprentice.min_examples) == (
        "fixed_priority", "ope", 500)
    assert champion.apprentice.line == line_of(text, "apprentice:")
    assert champion.share == pytest.approx(1 / 1.2)  # the apprentice survives share normalisation
    assert holdout.apprentice is None
    assert catalog.policies["fixed_priority"].kind == "fixed_priority"  # an implicit baseline joins the policies


def test_apprentice_and_learn_from_defaults(tmp_path):
    text = _arms(LEARNING, "      - {name: champion, policy: champion, apprentice: {baseline: uniform}}\n")
    hero = load_catalog(write(tmp_path, text)).placements["hero"]
    assert hero.learn_from == "own"
    assert hero.arms[0].apprentice.until == "ope"
    assert hero.arms[0].apprentice.min_examples == 1000
    assert load_catalog(write(tmp_path, BASE)).placements["hero"].learn_from == "own"


@pytest.mark.parametrize(
    ("apprentice", "field", "message"),
    [
        ("{baseline: fixd_priority}", "apprentice.baseline",
         "unknown policy 'fixd_priority' (did you mean 'fixed_priority'?)"),
        ("{baseline: uniform, until: forever}", "apprentice.until", "expected one of ope, manual, got 'forever'"),
        ("{baseline: uniform, min_examples: 0}", "apprentice.min_examples", "must be at least 1, got 0"),
        ("{baseline: uniform, after: 3}", "apprentice.after",
         "unknown key 'after' (known: baseline, until, min_examples)"),
        ("{until: manual}", "apprentice.baseline", "required field is missing"),
        ("{baseline: champion}", "apprentice.baseline",
         "'champion' is the arm's own policy: name the policy to imitate"),
        ("fixed_priority", "apprentice", "expected a mapping, got the string 'fixed_priority'"),
    ],
)
def test_bad_apprentice(tmp_path, apprentice, field, message):
    text = _arms(LEARNING, f"      - {{name: champion, policy: champion, apprentice: {apprentice}}}\n")
    path, error = one_error(tmp_path, text)
    assert error == f"{path}:{line_of(text, 'apprentice:')}: placements[hero].arms[champion].{field}: {message}"


def test_apprentice_needs_a_learning_policy(tmp_path):
    text = _arms(LEARNING, "      - name: a\n        policy: uniform\n        apprentice: {baseline: fixed_priority}\n")
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'apprentice:')}: placements[hero].arms[a].apprentice: the arm's policy 'uniform' "
        "(kind uniform) does not learn: apprentice mode trains the arm's own learning policy (e.g. kind vw) "
        "on the baseline's choices"
    )


def test_bad_learn_from(tmp_path):
    text = edit(BASE, "    reward:", "    learn_from: everyone\n    reward:")
    path, error = one_error(tmp_path, text)
    assert error == (
        f"{path}:{line_of(text, 'learn_from')}: placements[hero].learn_from: expected one of own, all_arms, "
        "got 'everyone'"
    )
