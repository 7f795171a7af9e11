"""A subscription's delivery rules, compiled once per subscription load: what is sent, and in what shape.

:func:`compile_rules` turns a :class:`~consumers.Subscription` into :class:`Rules`;
:meth:`Rules.prepare` turns one event into the request to send, or a :class:`Skip`
saying why nothing is sent. The live path, redeliveries and the preview of a
draft subscription all go through it, so a preview is what is then delivered.
"""

from __future__ import annotations

from ._filters import MAX_REGEX_LENGTH, OPERATORS, Predicate, check_filter, compile_filter
from ._redact import DEFAULT_REDACT_FIELDS, REDACTED, Redactor, compile_redactor
from ._rules import COUNTED_SKIPS, Prepared, Rules, Skip, SkipReason, compile_rules, counted

__all__ = (
    "COUNTED_SKIPS",
    "DEFAULT_REDACT_FIELDS",
    "MAX_REGEX_LENGTH",
    "OPERATORS",
    "REDACTED",
    "Predicate",
    "Prepared",
    "Redactor",
    "Rules",
    "Skip",
    "SkipReason",
    "check_filter",
    "compile_filter",
    "compile_redactor",
    "compile_rules",
    "counted",
)
