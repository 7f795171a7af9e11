"""What one run measured: its scale, the figures, the targets they are held to, percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

__all__ = ("Figure", "Results", "Scale", "Target", "percentile")

T = TypeVar("T")
Op = Literal[">=", "<=", "<"]


# -- scale and results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Counts and durations, smaller in ``--quick`` mode."""

    quick: bool

    def pick(self, quick: T, full: T) -> T:
        return quick if self.quick else full


@dataclass
class Figure:
    """One measured number."""

    key: str
    group: str
    label: str
    value: float | None
    unit: str
    ref: str | None = None
    """The ceiling or peer (a figure key) this one is quoted against, as a ratio."""
    note: str = ""


@dataclass
class Target:
    """A goal of the issue: ``value op threshold``, or ``value / ref op threshold`` when ``ref`` is set."""

    label: str
    key: str
    op: Op
    threshold: float
    ref: str | None = None
    scale_note: str = ""
    """Set when the figure was measured at a smaller scale than the target speaks of."""


@dataclass
class Results:
    """Everything one run measured, in order."""

    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be measured, and why; caveats."""
    series: dict[str, Any] = field(default_factory=dict)
    """Raw data for the plots."""
    profile: list[str] = field(default_factory=list)
    """Lines of the worker's profile (``--profile``)."""

    def add(
        self,
        key: str,
        group: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        ref: str | None = None,
        note: str = "",
    ) -> Figure:
        figure = Figure(key, group, label, value, unit, ref, note)
        self.figures[key] = figure
        shown = "n/a" if value is None else f"{value:,.2f}"
        print(f"  {label}: {shown} {unit}" + (f" ({note})" if note else ""), flush=True)
        return figure

    def value(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return None if figure is None else figure.value

    def ratio(self, key: str, ref: str) -> float | None:
        value, base = self.value(key), self.value(ref)
        if value is None or base is None or base == 0:
            return None
        return value / base

    def target(
        self, label: str, key: str, op: Op, threshold: float, *, ref: str | None = None, scale_note: str = ""
    ) -> None:
        self.targets.append(Target(label, key, op, threshold, ref, scale_note))

    def check(self, target: Target) -> tuple[float | None, bool | None]:
        """The compared quantity and whether it meets the target (None: not measured)."""
        measured = self.ratio(target.key, target.ref) if target.ref else self.value(target.key)
        if measured is None or math.isnan(measured):
            return None, None
        if target.op == ">=":
            return measured, measured >= target.threshold
        if target.op == "<=":
            return measured, measured <= target.threshold
        return measured, measured < target.threshold


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    if fraction == 0 or ordered[high] == ordered[low]:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * fraction
