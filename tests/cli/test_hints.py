"""One-line hints for what a newcomer types wrong: a tail pattern matching nothing, an actor type."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli._events import _subject_matches, _warn_if_nothing_matches


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("turbo.>", "turbo.issue.created", True),
        ("turbo.issue.*", "turbo.issue.created", True),
        ("turbo.*", "turbo.issue.created", False),
        ("turbo.*.created", "turbo.issue.created", True),
        ("turbo.isue.>", "turbo.issue.created", False),
        ("turbo.external.>", "turbo.external.github.issues", True),
    ],
)
def test_subject_matching_is_nats_matching(pattern: str, subject: str, matches: bool) -> None:
    assert _subject_matches(pattern, subject) is matches


def test_tail_warns_of_a_pattern_matching_nothing_naming_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    _warn_if_nothing_matches("isue.>", "turbo.isue.>")
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "'isue.>' matches no event type" in err and "'issue.>'" in err
    _warn_if_nothing_matches("issue.*", "turbo.issue.*")
    _warn_if_nothing_matches("turbo.>", "turbo.>")
    assert capsys.readouterr().err == ""


def test_an_unknown_actor_type_lists_the_choices() -> None:
    result = CliRunner().invoke(app, ["publish", "issue.created", "--entity-id", "1", "--actor-type", "human"])
    assert result.exit_code == 2
    assert "--actor-type (actor.type): 'human' is not one of user, ai, system" in result.stderr
