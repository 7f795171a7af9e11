"""Payload templates: a subscription's own request body, rendered from the event in a bounded Jinja2 sandbox.

A template is compiled once (:func:`compile_template`, from :func:`~consumers.rules.compile_rules`)
and rendered per event with the envelope as its context: ``event`` (all of it) and each of its
top-level fields by name (``data``, ``actor``, ``context``, ``event_type``, ``entity_id``, …).

Bounded, because a template is user input run inside the worker:

- Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` refuses private and internal
  attributes (``''.__class__``, ``cycler.__init__.__globals__``, ``self._TemplateReference__context``)
  and the methods that change lists, dicts and sets;
- time: every loop iteration, call, operator and output chunk checks the render's deadline
  (``TURBOHOOKS_TEMPLATE_TIMEOUT``), so nested loops over ``range()`` end as a failed render,
  not a hung worker;
- size: output stops at ``TURBOHOOKS_TEMPLATE_MAX_OUTPUT`` bytes, and the operations that could
  build one huge string in a single step (``*``, ``~``, ``%``, ``join``, ``replace``, widths of
  ``center``/``ljust``/``format``…) are checked before or right after they run.

A render that fails is a :class:`RenderFailed` naming the template line: the engine records it as
a failed attempt (no request is sent) and dead-letters the event, never retries it.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import msgspec
from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from streams import EventValidationError

if TYPE_CHECKING:
    from jinja2.runtime import Context

    from integrations import OutgoingRequest
    from streams import Event, Settings

__all__ = (
    "TEMPLATABLE_INTEGRATIONS",
    "PayloadTemplate",
    "RenderFailed",
    "TemplateLimits",
    "compile_template",
)

TEMPLATABLE_INTEGRATIONS: Final = frozenset({"webhook", "zapier", "slack", "discord"})
"""Integrations whose request is one HTTP body a template can replace. E-mail (a message, not a body),
GitHub (API calls of its own) and Claude (a conversation it builds) refuse a template."""

_TEMPLATE_NAME: Final = "<template>"
_MAX_SOURCE: Final = 64 * 1024
"""Characters of a template's source."""
_JSON_TYPE: Final = "application/json"
_CONTENT_TYPE: Final = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;\s*[\w.-]+=[\w.\"-]+)*$")
_ESCAPED: Final = re.compile(r"(^text/html|^application/xhtml\+xml|^(text|application)/xml|\+xml)(;|$)", re.I)
_JSON: Final = re.compile(r"^application/([\w.-]+\+)?json(;|$)", re.I)
_BIG_WIDTH: Final = re.compile(r"%[-#0 +]*(\*|\d{5,})|\.(\*|\d{5,})|\{[^}]*:[^}]*\d{5,}")
"""``%``/``format`` specs whose width or precision alone could build a huge string."""
_SIZED_METHODS: Final = frozenset({"join", "replace", "format", "format_map", "expandtabs"})
_WIDTH_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill"})
_WIDTH_FILTERS: Final = frozenset({"center", "indent"})


class TemplateLimits(msgspec.Struct, frozen=True):
    """How long one render may take and how large its output may be."""

    max_output: int = 256 * 1024
    """Bytes (characters, checked as the output grows; bytes once encoded)."""
    timeout: float = 0.05
    """Seconds of one render."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateLimits:
        cap = settings.template_max_output
        return cls(max_output=cap if cap > 0 else 1 << 31, timeout=settings.template_timeout)


class RenderFailed(msgspec.Struct, frozen=True):
    """The template could not render this event (``error`` names the line): a failed attempt, nothing sent."""

    error: str


class _Exceeded(TemplateError):
    """A render over its time or size budget."""


class _Budget(threading.local):
    """The deadline and output cap of the render running on this thread (renders do not nest)."""

    deadline = float("inf")
    cap = 256 * 1024


_budget: Final = _Budget()


def _tick() -> None:
    if time.perf_counter() > _budget.deadline:
        raise _Exceeded("render took longer than its time limit (a loop too long?)")


def _sized(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict) and len(value) > _budget.cap:
        raise _Exceeded(f"a value of {len(value)} items is larger than the output limit ({_budget.cap} bytes)")
    return value


def _guarded(values: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each item checks the deadline."""
    for value in values:
        _tick()
        yield value


def _weight(value: Any) -> int:
    """Roughly the characters ``value`` can become (strings and containers of them)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(_weight(item) for item in value)
    return 1


class _Generator(CodeGenerator):
    """Jinja's compiler, with every ``~`` concatenation checked against the output cap."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox (immutable: no ``list.append`` doubling a list in a loop), with the render's
    deadline and size cap checked where a template spends time or memory."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    @staticmethod
    def sized(value: Any) -> Any:
        return _sized(value)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        # Loops without calls or output inside (nested `for` over `range`) would
        # never reach another check: their iterables get one.
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_turbohooks_guarded", [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(count, int)
                    and isinstance(seq, str | bytes | list | tuple)
                    and count > 0
                    and _weight(seq) * count > _budget.cap
                ):
                    raise _Exceeded(f"'*' would build a value larger than the output limit ({_budget.cap} bytes)")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 4096:
                raise _Exceeded("'**' with an exponent over 4096")
        elif operator == "%" and isinstance(left, str) and _BIG_WIDTH.search(left):
            raise _Exceeded("a '%' format width or precision over 9999")
        return _sized(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The envelope is JSON: dicts of data. `data.current.title` is a key, not an
        # attribute; the sandbox's default tries the attribute first and gets there
        # through an AttributeError, a quarter of a render (cProfile: 31 lookups, 92 µs
        # of a 1 KiB body). A key present is plain data; a missing one (`d.items`) still
        # goes through the sandbox's checked attribute access.
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Refused outright (the sandbox's default is an undefined value, which a
        # lenient template would print as nothing): an escape attempt is an error.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_method(owner, value.__name__, (), {})
        return super().wrap_str_format(value)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _WIDTH_METHODS:
                _check_widths(name, args, kwargs)
            elif name in _SIZED_METHODS:
                _check_method(owner, name, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _check_widths(name: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    """A width (``center``, ``ljust``, ``indent``…) over the output cap is refused (only widths: an
    integer being formatted, a timestamp, is a value of any size)."""
    for arg in itertools.chain(args, kwargs.values()):
        if isinstance(arg, int) and arg > _budget.cap:
            raise _Exceeded(f"{name}: a width of {arg} is larger than the output limit ({_budget.cap} bytes)")


def _check_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the str methods that could build one huge string, before they do."""
    cap = _budget.cap
    estimate = len(text)
    if name == "join" and args:
        estimate = _weight(list(args[0])) + len(text) * len(args[0]) if isinstance(args[0], list | tuple) else 0
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        estimate = len(text) + (text.count(args[0]) if args[0] else len(text) + 1) * len(args[1])
    elif name in ("format", "format_map"):
        if _BIG_WIDTH.search(text):
            raise _Exceeded("a format width or precision over 9999")
        estimate = len(text) + sum(_weight(a) for a in itertools.chain(args, kwargs.values()))
    elif name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else kwargs.get("tabsize", 8)
        estimate = len(text) * max(1, size if isinstance(size, int) else 8)
    if estimate > cap:
        raise _Exceeded(f"str.{name} would build a value larger than the output limit ({cap} bytes)")


def _undefined_as_null(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, Markup):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _tojson(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON (a missing value is ``null``); templates that escape use :func:`_tojson_html`."""
    if indent is not None:
        return json.dumps(_sized(value), indent=indent, default=_undefined_as_null, ensure_ascii=False)
    return msgspec.json.encode(value, enc_hook=_undefined_as_null).decode()


def _tojson_html(value: Any, indent: int | None = None) -> Markup:
    return htmlsafe_json_dumps(value, dumps=json.dumps, default=_undefined_as_null, indent=indent)


def _json_finalize(value: Any) -> Any:
    """In a JSON template ``{{ x }}`` of a dict, list, bool or null writes it as JSON (a string stays as it is)."""
    if isinstance(value, dict | list | bool) or value is None:
        return _tojson(value)
    return value


def _bounded_filter(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter whose integer arguments (widths, counts) and result are held to the output cap."""

    @functools.wraps(apply)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = list(itertools.chain(args, kwargs.values()))
        if name in _WIDTH_FILTERS:
            _check_widths(name, values[1:], {})  # the first is the value filtered
        texts = [v for v in values if isinstance(v, str)]
        if name == "replace" and len(texts) >= 3:
            _check_method(texts[0], "replace", (texts[1], texts[2]), {})
        elif name == "format" and texts:
            _check_method(texts[0], "format", tuple(values[values.index(texts[0]) + 1 :]), {})
        elif name == "join" and len(args) >= 2:
            # join(eval_ctx, value, d="", attribute=None): measured before it is built.
            items = list(args[1])
            sep = args[2] if len(args) > 2 else kwargs.get("d", "")
            if sum(len(str(i)) for i in items) + len(str(sep)) * len(items) > _budget.cap:
                raise _Exceeded(f"join would build a value larger than the output limit ({_budget.cap} bytes)")
            args = (args[0], items, *args[2:])
        return _sized(apply(*args, **kwargs))

    return bounded


def _environment(*, escaped: bool, json_body: bool) -> _Sandbox:
    env = _Sandbox(
        autoescape=escaped,
        undefined=ChainableUndefined,
        keep_trailing_newline=True,
        finalize=_json_finalize if json_body else None,
    )
    for name, apply in list(env.filters.items()):
        env.filters[name] = _bounded_filter(name, apply)
    env.filters["_turbohooks_guarded"] = _guarded
    env.filters["tojson"] = _tojson_html if escaped else _tojson
    env.globals.pop("lipsum", None)  # generates text of any size; nothing a payload needs
    return env


_ENVIRONMENTS: Final = {
    (escaped, json_body): _environment(escaped=escaped, json_body=json_body)
    for escaped in (False, True)
    for json_body in (False, True)
}


def _line_of(exc: BaseException) -> int | None:
    """The template line an exception was raised at (Jinja rewrites tracebacks to template frames)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _described(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc) or type(exc).__name__
    line = _line_of(exc)
    return f" line {line}: {message}" if line is not None else f": {message}"


def _json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"the output is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
    except RecursionError:
        return "the output is not JSON: nested too deeply"
    return "the output is not JSON"


class PayloadTemplate:
    """One compiled template and how its output is sent; renders an event's body."""

    __slots__ = ("_globals", "_template", "content_type", "json_body", "limits", "source")

    def __init__(self, source: str, content_type: str, limits: TemplateLimits) -> None:
        self.source = source
        self.content_type = content_type
        self.json_body = bool(_JSON.match(content_type))
        """The output must parse as JSON (``application/json`` and ``+json`` types)."""
        self.limits = limits
        env = _ENVIRONMENTS[(bool(_ESCAPED.search(content_type)), self.json_body)]
        self._template = env.from_string(source)
        self._template.filename = _TEMPLATE_NAME
        self._globals = dict(self._template.globals)

    def render(self, event: Event) -> bytes | RenderFailed:
        """The body for ``event``, or why there is none (line and message)."""
        envelope = msgspec.to_builtins(event)
        cap = self.limits.max_output
        _budget.cap = cap
        _budget.deadline = time.perf_counter() + self.limits.timeout
        chunks: list[str] = []
        append = chunks.append
        size = 0
        counted = 0
        template = self._template
        try:
            # Template.generate() without its extra generator layer (a fifth of a small render);
            # the context shared (the globals merged here, once) rather than copied again by Jinja.
            context = template.new_context({**self._globals, **envelope, "event": envelope}, shared=True)
            try:
                for chunk in template.root_render_func(context):
                    append(chunk)
                    if not len(chunks) & 7:
                        # The size and the deadline every 8 chunks: each chunk is bounded on its
                        # own (values are sized where they are built), so the list holds at most
                        # 8 of them past the cap; per chunk this loop was 5 µs of a 1 KiB render.
                        size += sum(map(len, chunks[counted:]))
                        counted = len(chunks)
                        if size > cap:
                            raise _Exceeded(f"the output is larger than {cap} bytes")
                        _tick()
            except Exception:  # noqa: BLE001  re-raised at once, its traceback rewritten to template lines
                template.environment.handle_exception()
        # SecurityError (a sandbox refusal) is a TemplateError; the others are what a
        # template's expressions raise on data they do not expect.
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
            return RenderFailed(f"template{_described(exc)}")
        finally:
            _budget.deadline = float("inf")
        text = "".join(chunks)
        body = text.encode()
        if len(body) > cap:
            return RenderFailed(f"template: the output is larger than {cap} bytes")
        if self.json_body:
            try:
                msgspec.json.decode(body)
            except msgspec.DecodeError:
                return RenderFailed(f"template: {_json_error(text)}")
        return body

    def apply(self, event: Event, request: OutgoingRequest) -> OutgoingRequest | RenderFailed:
        """``request`` with the rendered body and its content type (the signature is computed over it later)."""
        body = self.render(event)
        if isinstance(body, RenderFailed):
            return body
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = self.content_type
        return msgspec.structs.replace(request, body=body, headers=headers)


def compile_template(
    source: str, content_type: str | None, integration: str, limits: TemplateLimits | None = None
) -> PayloadTemplate:
    """Compile a subscription's template; ``EventValidationError`` (field ``template`` or
    ``template_content_type``) for a syntax error (its line and message), a bad content type,
    or an integration that sends no templatable body."""
    if integration not in TEMPLATABLE_INTEGRATIONS:
        raise EventValidationError(
            "template",
            f"the {integration} integration does not send a templatable body; templates apply to "
            + ", ".join(sorted(TEMPLATABLE_INTEGRATIONS)),
        )
    kind = (content_type or _JSON_TYPE).strip()
    if not _CONTENT_TYPE.match(kind) or len(kind) > 200:
        raise EventValidationError("template_content_type", f"{kind!r} is not a content type (e.g. text/plain)")
    if not source.strip():
        raise EventValidationError("template", "is empty (leave it out to send the integration's own body)")
    if len(source) > _MAX_SOURCE:
        raise EventValidationError("template", f"is longer than {_MAX_SOURCE} characters")
    try:
        return PayloadTemplate(source, kind, limits or TemplateLimits())
    except TemplateSyntaxError as exc:
        raise EventValidationError("template", _described(exc)[1:].lstrip(": ")) from None
    except (TemplateError, RecursionError, MemoryError) as exc:
        raise EventValidationError("template", str(exc) or type(exc).__name__) from None
