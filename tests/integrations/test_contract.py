"""One contract, every integration: config checks, rendering within limits, Retry-After parsing.

Like litestar's channels backend contract test: the same tests run against
every entry of ``INTEGRATIONS``, and an integration without a case here fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from integrations import INTEGRATIONS, GitHubPlan, Integration, requires_url
from streams import EVENT_CATALOG, EventValidationError, encode_event

from .events import realistic
from .fakes import check_discord_message, check_flat, check_slack_message

LINK = "https://turbo.example.com/{entity_type}s/{entity_id}"


def _check_github(body: bytes) -> list[str]:
    plan = msgspec.json.decode(body, type=GitHubPlan)
    problems = []
    if plan.title is not None and not 1 <= len(plan.title) <= 256:
        problems.append("title: 1 to 256 characters")
    if plan.body is not None and len(plan.body) > 65536:
        problems.append("body: more than 65,536 characters")
    if plan.comment is not None and not 1 <= len(plan.comment) <= 65536:
        problems.append("comment: 1 to 65,536 characters")
    problems += [f"label {name!r}: 1 to 50 characters" for name in plan.labels if not 1 <= len(name) <= 50]
    return problems


def _check_email(body: bytes) -> list[str]:
    mail = msgspec.json.decode(body)
    problems = []
    if not mail["to"]:
        problems.append("no recipient")
    if len(mail["subject"]) > 200 or "\n" in mail["subject"]:
        problems.append("subject: one line of at most 200 characters")
    if "<script" in mail["html"] or "<!channel>" in mail["html"]:
        problems.append("html: event text not escaped")
    return problems


def _check_claude(body: bytes) -> list[str]:
    sent = msgspec.json.decode(body)
    context = sent.get("prompt_context", {})
    return [] if context.get("reply", {}).get("actor", {}).get("type") == "ai" else ["no reply contract"]


@dataclass
class Case:
    url: str
    config: dict[str, Any]
    bad_configs: list[tuple[dict[str, Any], str]]
    """Configs that must be refused, and the field the refusal must name."""
    check: Callable[[bytes], list[str]]
    bad_urls: list[str] = field(default_factory=list)
    sends: tuple[str, ...] = ()
    """Event types that must produce a request; empty: every type of the catalog must."""


CASES: dict[str, Case] = {
    "webhook": Case(
        url="https://receiver.example.com/hook",
        config={},
        bad_configs=[({"anything": 1}, "integration_config.anything")],
        check=lambda body: [] if msgspec.json.decode(body)["event_id"] else ["not the envelope"],
    ),
    "slack": Case(
        url="https://hooks.slack.com/services/T000/B000/XXXX",
        config={"link_template": LINK},
        bad_configs=[
            ({"link_template": 3}, "integration_config.link_template"),
            ({"link_template": "https://x/{password}"}, "integration_config.link_template"),
            ({"channel": "#general"}, "integration_config.channel"),
        ],
        bad_urls=["https://hooks.slack.com/workflows/T/B/X", "https://discord.com/api/webhooks/1/x", ""],
        check=lambda body: check_slack_message(msgspec.json.decode(body)),
    ),
    "discord": Case(
        url="https://discord.com/api/webhooks/123/abc",
        config={"link_template": LINK, "username": "Turbo"},
        bad_configs=[
            ({"username": "Discord bot"}, "integration_config.username"),
            ({"username": "x" * 81}, "integration_config.username"),
            ({"avatar_url": "ftp://x"}, "integration_config.avatar_url"),
            ({"colour": 1}, "integration_config.colour"),
        ],
        bad_urls=["https://hooks.slack.com/services/T/B/X", "http://discord.com/api/webhooks/123/abc"],
        check=lambda body: check_discord_message(msgspec.json.decode(body)),
    ),
    "zapier": Case(
        url="https://hooks.zapier.com/hooks/catch/123456/abcdef/",
        config={"link_template": LINK},
        bad_configs=[({"flatten": False}, "integration_config.flatten")],
        bad_urls=["https://hooks.zapier.com/hooks/standard/1/x/"],
        check=lambda body: check_flat(msgspec.json.decode(body)),
    ),
    "github": Case(
        url="https://github.com/octo/turbo",
        config={"repository": "octo/turbo", "labels": ["turbo"], "link_template": LINK},
        bad_configs=[
            ({}, "integration_config.repository"),
            ({"repository": "not a repo"}, "integration_config.repository"),
            ({"repository": "o/r", "api_url": "api.github.com"}, "integration_config.api_url"),
            ({"repository": "o/r", "labels": ["x" * 51]}, "integration_config.labels[0]"),
            ({"repository": "o/r", "token_env": "lower-case"}, "integration_config.token_env"),
            ({"repository": "o/r", "token_env": "GITHUB_SECRET"}, "integration_config.token_env"),
        ],
        check=_check_github,
        sends=(
            "issue.created",
            "issue.updated",
            "issue.commented",
            "issue.closed",
            "issue.reopened",
            "issue.tagged",
            "comment.created",
        ),
    ),
    "email": Case(
        url="https://mail.example.com/",
        config={"to": ["ops@example.com"], "from": "turbo@example.com", "subject_prefix": "[T] "},
        bad_configs=[
            ({}, "integration_config.to"),
            ({"to": ["not an address"]}, "integration_config.to[0]"),
            ({"to": "ops@example.com"}, "integration_config.to"),
            ({"to": ["a@b.c"], "from": "nobody"}, "integration_config.from"),
            ({"to": ["a@b.c"], "subject_prefix": "a\nBcc: x@y.z"}, "integration_config.subject_prefix"),
        ],
        check=_check_email,
    ),
    "claude": Case(
        url="https://claude.example.com/webhook/comment",
        config={"events": ["issue.created"], "instructions": "Be brief."},
        bad_configs=[
            ({"events": ["issue.nope"]}, "integration_config.events[0]"),
            ({"events": "issue.created"}, "integration_config.events"),
            ({"instructions": "x" * 4001}, "integration_config.instructions"),
        ],
        check=_check_claude,
        sends=("comment.created", "issue.created"),
    ),
}


@pytest.fixture(params=sorted(INTEGRATIONS))
def integration(request: pytest.FixtureRequest) -> tuple[Integration, Case]:
    name = request.param
    assert name in CASES, f"integration {name!r} has no contract case"
    return INTEGRATIONS[name], CASES[name]


def test_every_integration_has_a_case() -> None:
    assert set(CASES) == set(INTEGRATIONS)


def test_declares_what_the_engine_reads(integration: tuple[Integration, Case]) -> None:
    impl, _ = integration
    assert isinstance(impl, Integration)
    assert impl.name in INTEGRATIONS and isinstance(impl.signs, bool)
    assert isinstance(requires_url(impl), bool)


def test_good_config_is_kept(integration: tuple[Integration, Case]) -> None:
    impl, case = integration
    saved = impl.validate_config(case.config, case.url)
    # What was saved validates again to itself (it is what render will read).
    assert impl.validate_config(saved, case.url) == saved


def test_bad_config_is_refused_naming_the_field(integration: tuple[Integration, Case]) -> None:
    impl, case = integration
    for config, field_name in case.bad_configs:
        with pytest.raises(EventValidationError) as caught:
            impl.validate_config(config, case.url)
        assert caught.value.field == field_name, (config, str(caught.value))
    for url in case.bad_urls:
        with pytest.raises(EventValidationError) as caught:
            impl.validate_config(case.config, url)
        assert caught.value.field == "url", (url, str(caught.value))


def test_renders_every_event_type_within_the_service_limits(integration: tuple[Integration, Case]) -> None:
    impl, case = integration
    config = impl.validate_config(case.config, case.url)
    sent = []
    for event_type in EVENT_CATALOG:
        event = realistic(event_type)
        request = impl.render(event, encode_event(event), case.url, config)
        if request is None:
            continue
        sent.append(event_type)
        assert request.body, event_type
        assert case.check(request.body) == [], event_type
    assert set(case.sends or EVENT_CATALOG) <= set(sent)


def test_nothing_is_sent_for_an_ai_when_the_integration_wakes_an_ai(integration: tuple[Integration, Case]) -> None:
    impl, case = integration
    config = impl.validate_config(case.config, case.url)
    event = realistic("comment.created", actor_type="ai")
    request = impl.render(event, encode_event(event), case.url, config)
    assert (request is None) == (impl.name == "claude")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, ""),
        ({"Retry-After": "soon"}, "not json"),
        ({"Retry-After": ""}, '{"retry_after": "later"}'),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "garbage"}, "[]"),
        ({"Retry-After": "nan"}, '{"retry_after": null}'),
    ],
)
def test_retry_after_ignores_missing_and_garbage(
    integration: tuple[Integration, Case], headers: dict[str, str], body: str
) -> None:
    impl, _ = integration
    assert impl.retry_after(429, headers, body) is None
    assert impl.retry_after(None, headers, body) is None


def test_retry_after_reads_the_header(integration: tuple[Integration, Case]) -> None:
    impl, _ = integration
    expected = None if impl.name == "email" else 2.0  # SMTP has no Retry-After
    assert impl.retry_after(429, {"retry-after": "2"}, "") == expected
