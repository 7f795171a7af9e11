"""Payload templates: rendering, the JSON rule, escaping, the sandbox and its time and size bounds."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from consumers import Subscription
from consumers.rules import Prepared, RenderFailed, TemplateLimits, compile_rules, compile_template
from integrations import INTEGRATIONS
from streams import EventValidationError, build_event, encode_event

_EVENT = build_event(
    event_type="issue.updated",
    entity_id="iss-1",
    data={
        "current": {"title": 'Login "fails"', "priority": "high", "status": "testing", "tags": ["auth", "p1"]},
        "previous": {"status": "in_progress"},
        "changes": ["status"],
    },
    actor={"type": "user", "name": "ada@example.com"},
    context={"project_id": "proj-9"},
)


def _render(source: str, content_type: str | None = None, **limits: float) -> bytes | RenderFailed:
    return compile_template(source, content_type, "webhook", TemplateLimits(**limits)).render(_EVENT)  # type: ignore[arg-type]


def test_json_template_sees_the_envelope_by_its_top_level_names() -> None:
    body = _render(
        '{"text": {{ data.current.title|tojson }}, "who": "{{ actor.name }}", "type": {{ event_type|tojson }},\n'
        ' "entity": "{{ entity_id }}", "project": "{{ context.project_id }}", "id": "{{ event.event_id }}",\n'
        ' "tags": {{ data.current.tags }}, "gone": {{ data.current.nothing.deeper|tojson }}}'
    )
    assert isinstance(body, bytes)
    assert msgspec.json.decode(body) == {
        "text": 'Login "fails"',
        "who": "ada@example.com",
        "type": "issue.updated",
        "entity": "iss-1",
        "project": "proj-9",
        "id": str(_EVENT.event_id),
        "tags": ["auth", "p1"],
        "gone": None,
    }


def test_output_that_is_not_json_is_a_failed_render_naming_the_line() -> None:
    failed = _render('{\n  "title": "{{ data.current.title }}",\n  "ok": true\n}')  # the quotes in the title break it
    assert isinstance(failed, RenderFailed)
    assert failed.error.startswith("template: the output is not JSON: line 2 column"), failed.error


def test_a_runtime_error_names_its_line() -> None:
    failed = _render('{\n"a": 1,\n"b": {{ 1 // data.current.missing }}\n}')
    assert isinstance(failed, RenderFailed)
    assert failed.error.startswith("template line 3: "), failed.error


def test_text_and_html_templates_escape_per_content_type() -> None:
    text = compile_template("{{ data.current.title }} <b>", "text/plain", "webhook").render(_EVENT)
    assert text == b'Login "fails" <b>'
    html = compile_template("<p>{{ data.current.title }}</p>", "text/html; charset=utf-8", "slack").render(_EVENT)
    assert html == b"<p>Login &#34;fails&#34;</p>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ self.__dict__ }}",
        "{{ data.__class__.__base__.__subclasses__() }}",
        "{{ (data|attr('__class__')) }}",
        "{{ ''.format.__globals__ }}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    failed = _render(source, "text/plain")
    assert isinstance(failed, RenderFailed), failed
    assert "unsafe" in failed.error or "undefined" in failed.error, failed.error


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    ],
)
def test_a_template_that_would_loop_for_hours_stops_at_its_deadline(source: str) -> None:
    start = time.perf_counter()
    failed = _render(source, "text/plain", timeout=0.05)
    elapsed = time.perf_counter() - start
    assert isinstance(failed, RenderFailed) and "time limit" in failed.error, failed
    assert elapsed < 0.5, elapsed


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",  # 100 MB, a chunk at a time
        "{{ 'x' * 1000000000 }}",
        "{{ 'x'.center(1000000000) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'|indent(1000000000) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%999999999d'|format(1) }}",
        "{{ '{:999999999}'.format(1) }}",
        "{{ 2 ** 1000000000 }}",
        "{{ range(10000)|join('x' * 100000) }}",
        "{{ ('x' * 100000).replace('x', 'yyyy') }}",
        "{{ ('x' * 100000)|replace('x', 'yyyy') }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    ],
)
def test_output_size_is_bounded_before_memory_is(source: str) -> None:
    start = time.perf_counter()
    failed = _render(source, "text/plain", max_output=256 * 1024, timeout=1.0)
    assert isinstance(failed, RenderFailed), failed
    assert any(word in failed.error for word in ("limit", "larger than", "exponent", "width")), failed.error
    assert time.perf_counter() - start < 0.5


def test_output_under_the_limit_renders_whole() -> None:
    body = _render("{% for i in range(1000) %}{{ 'x' * 100 }}{% endfor %}", "text/plain", max_output=256 * 1024)
    assert body == b"x" * 100_000


def test_syntax_errors_and_misfits_are_refused_at_compile_naming_the_field() -> None:
    with pytest.raises(EventValidationError) as err:
        compile_template('{\n"a": {{ data.current.title \n\n}', None, "webhook")
    assert err.value.field == "template" and str(err.value) == "template: line 4: unexpected '}'", str(err.value)
    for integration in ("email", "github", "claude"):
        with pytest.raises(EventValidationError, match="does not send a templatable body"):
            compile_template("{}", None, integration)
    with pytest.raises(EventValidationError) as err:
        compile_template("{}", "not a type", "webhook")
    assert err.value.field == "template_content_type"
    with pytest.raises(EventValidationError, match="is empty"):
        compile_template("  ", None, "webhook")


def test_render_of_a_1kib_body_is_fast() -> None:
    """The benchmark suite measures it (≤ 50 µs); here only a generous bound against a regression by 10x."""
    template = compile_template(
        '{"title": {{ data.current.title|tojson }}, "status": "{{ data.current.status }}",'
        ' "by": {{ actor.name|tojson }}, "pad": "' + "p" * 900 + '"}',
        None,
        "webhook",
    )
    template.render(_EVENT)
    start = time.perf_counter()
    for _ in range(200):
        template.render(_EVENT)
    assert (time.perf_counter() - start) / 200 < 500e-6


@pytest.mark.parametrize(
    ("integration", "url"),
    [
        ("webhook", "https://example.com/hook"),
        ("zapier", "https://hooks.zapier.com/hooks/catch/1/abc/"),
        ("slack", "https://hooks.slack.com/services/T/B/X"),
        ("discord", "https://discord.com/api/webhooks/1/abc"),
    ],
)
def test_compiled_rules_send_the_rendered_body_in_place_of_the_integrations(integration: str, url: str) -> None:
    now = datetime.now(UTC)
    config = INTEGRATIONS[integration].validate_config({}, url)
    sub = Subscription(
        id=uuid.uuid4(),
        name="t",
        url=url,
        event_types=["issue.*"],
        integration=integration,
        integration_config=config,
        created_at=now,
        updated_at=now,
        template="{{ actor.name }}: {{ data.current.title }}",
        template_content_type="text/plain",
    )
    prepared = compile_rules(sub).prepare(_EVENT, encode_event(_EVENT))
    assert isinstance(prepared, Prepared)
    assert prepared.request.body == b'ada@example.com: Login "fails"'
    assert [v for k, v in prepared.request.headers.items() if k.lower() == "content-type"] == ["text/plain"]
    assert prepared.request.url == url


@pytest.mark.parametrize(
    ("source", "output"),
    [
        ("{{ '%d'|format(1700000000) }}", "1700000000"),
        ("{{ '{:,}'.format(5000000) }}", "5,000,000"),
        ("{{ 300000000|filesizeformat }}", "300.0 MB"),
        ("{{ [1, 2000000]|max }}", "2000000"),
        ("{{ 'x'|center(9) }}", "    x    "),
    ],
)
def test_large_numbers_as_values_are_fine(source: str, output: str) -> None:
    assert _render(source, "text/plain") == output.encode()


@pytest.mark.parametrize(
    "source",
    [
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
        "{% set d = {} %}{{ d.update(a=1) }}",
        "{{ ('\\t' * 1000).expandtabs(100000) }}",
    ],
)
def test_containers_are_immutable_and_tabs_bounded(source: str) -> None:
    failed = _render(source, "text/plain")
    assert isinstance(failed, RenderFailed), failed


def test_an_escaping_template_bounds_join_too_and_escapes_its_items() -> None:
    html = compile_template("{{ data.current.tags|join('<br>') }}", "text/html", "webhook").render(_EVENT)
    assert html == b"auth&lt;br&gt;p1"
    huge = compile_template("{{ range(10000)|join('x' * 100000) }}", "text/html", "webhook").render(_EVENT)
    assert isinstance(huge, RenderFailed) and "join would build" in huge.error


def test_a_key_of_the_data_wins_over_a_dict_method_and_escapes_stay_refused() -> None:
    """`data.current.items` is the event's `items` field (the envelope is data), not dict.items;
    a missing key still goes through the sandbox's checked attribute access."""
    event = build_event(
        event_type="issue.updated",
        entity_id="e1",
        data={"current": {"items": ["a", "b"], "__class__": "data, not a type"}},
    )
    template = compile_template(
        '{"items": {{ data.current.items|tojson }}, "c": "{{ data.current.__class__ }}"}', None, "webhook"
    )
    assert msgspec.json.decode(template.render(event)) == {"items": ["a", "b"], "c": "data, not a type"}
    escape = compile_template('{"x": "{{ data.previous.__class__ }}"}', None, "webhook")
    failed = escape.render(build_event(event_type="issue.updated", entity_id="e1", data={"previous": {}}))
    assert isinstance(failed, RenderFailed) and "unsafe" in failed.error
