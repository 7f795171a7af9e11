"""A subscription's delivery rules, compiled once per subscription load: what is sent, and in what shape.

:func:`compile_rules` turns a :class:`~consumers.Subscription` into :class:`Rules`;
:meth:`Rules.prepare` turns one event into the request to send, or a :class:`Skip`
saying why nothing is sent. The live path, redeliveries and the preview of a
draft subscription all go through it, so a preview is what is then delivered.
"""

from __future__ import annotations

from ._rules import DEFAULT_MAX_CAUSATION_DEPTH, Prepared, Rules, Skip, SkipReason, compile_rules, loop_stop

__all__ = ("DEFAULT_MAX_CAUSATION_DEPTH", "Prepared", "Rules", "Skip", "SkipReason", "compile_rules", "loop_stop")
