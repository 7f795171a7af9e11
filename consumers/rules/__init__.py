"""A subscription's delivery rules, compiled once per subscription load: what is sent, and in what shape.

:func:`compile_rules` turns a :class:`~consumers.Subscription` into :class:`Rules`;
:meth:`Rules.prepare` turns one event into the request to send, or a :class:`Skip`
saying why nothing is sent. The live path, redeliveries and the preview of a
draft subscription all go through it, so a preview is what is then delivered.
"""

from __future__ import annotations

from ._filters import MAX_REGEX_LENGTH, OPERATORS, Predicate, check_filter, compile_filter
from ._redact import DEFAULT_REDACT_FIELDS, REDACTED, Redactor, compile_redactor
from ._rules import (
    COUNTED_SKIPS,
    DEFAULT_MAX_CAUSATION_DEPTH,
    Prepared,
    Rules,
    Skip,
    SkipReason,
    compile_rules,
    counted,
    loop_stop,
    rules_for,
)
from ._templates import TEMPLATABLE_INTEGRATIONS, PayloadTemplate, RenderFailed, TemplateLimits, compile_template
from ._verify import catalog_sample, check_rules_on_save, stored_samples

__all__ = (
    "COUNTED_SKIPS",
    "DEFAULT_MAX_CAUSATION_DEPTH",
    "DEFAULT_REDACT_FIELDS",
    "MAX_REGEX_LENGTH",
    "OPERATORS",
    "REDACTED",
    "TEMPLATABLE_INTEGRATIONS",
    "PayloadTemplate",
    "Predicate",
    "Prepared",
    "Redactor",
    "RenderFailed",
    "Rules",
    "Skip",
    "SkipReason",
    "TemplateLimits",
    "catalog_sample",
    "check_filter",
    "check_rules_on_save",
    "compile_filter",
    "compile_redactor",
    "compile_rules",
    "compile_template",
    "counted",
    "loop_stop",
    "rules_for",
    "stored_samples",
)
