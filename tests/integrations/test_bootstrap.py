"""SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL, CLAUDE_WEBHOOK_URL: their subscriptions, created once."""

from __future__ import annotations

import pytest

from consumers import ENV_SUBSCRIPTIONS, Engine, ensure_env_subscriptions
from streams import ConfigError
from streams.settings import EnvSubscriptionSettings

from .fakes import FakeDiscord, FakeSlack


async def test_created_once_kept_when_unset_and_repointed_when_changed(
    engine: Engine, slack: FakeSlack, discord: FakeDiscord
) -> None:
    env = {"SLACK_WEBHOOK_URL": slack.hook, "DISCORD_WEBHOOK_URL": discord.hook, "SLACK_EVENT_TYPES": "issue.*"}
    first = await ensure_env_subscriptions(engine.service, EnvSubscriptionSettings.from_env(env))
    assert [(s.name, s.integration, s.url) for s in first] == [
        ("env-slack", "slack", slack.hook),
        ("env-discord", "discord", discord.hook),
    ]
    assert first[0].event_types == ["issue.*"]
    assert first[1].event_types == list(ENV_SUBSCRIPTIONS[1].event_types)

    again = await ensure_env_subscriptions(engine.service, EnvSubscriptionSettings.from_env(env))
    assert [s.id for s in again] == [s.id for s in first]
    assert await ensure_env_subscriptions(engine.service, EnvSubscriptionSettings.from_env({})) == []
    assert len(await engine.subscriptions.list()) == 2, "removing the variable deletes nothing"

    moved = slack.url + "/services/T9/B9/moved"
    (changed,) = await ensure_env_subscriptions(
        engine.service, EnvSubscriptionSettings.from_env({"SLACK_WEBHOOK_URL": moved})
    )
    assert changed.id == first[0].id and changed.url == moved
    assert (await engine.registry.get(changed.id)) is not None


async def test_a_refused_value_names_its_variable(engine: Engine, slack: FakeSlack) -> None:
    with pytest.raises(ConfigError) as caught:
        await ensure_env_subscriptions(
            engine.service, EnvSubscriptionSettings.from_env({"DISCORD_WEBHOOK_URL": slack.hook})
        )
    assert caught.value.variable == "DISCORD_WEBHOOK_URL" and "Discord" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        await ensure_env_subscriptions(
            engine.service,
            EnvSubscriptionSettings.from_env({"SLACK_WEBHOOK_URL": slack.hook, "SLACK_EVENT_TYPES": "nope"}),
        )
    assert caught.value.variable == "SLACK_EVENT_TYPES"
    with pytest.raises(ConfigError) as caught:
        await ensure_env_subscriptions(
            engine.service,
            EnvSubscriptionSettings.from_env(
                {"CLAUDE_WEBHOOK_URL": slack.hook, "CLAUDE_WEBHOOK_SECRET": "not base64!"}
            ),
        )
    assert caught.value.variable == "CLAUDE_WEBHOOK_SECRET"
