"""Reading a Prometheus exposition as a scraper does: every sample by name and labels, and its validity."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ("Samples", "assert_one_help_and_type_per_family", "samples", "value")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by (name, labels); the parse fails on an invalid one."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"{key} twice"
            found[key] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 when absent (a counter not moved yet)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def assert_one_help_and_type_per_family(text: str) -> None:
    """A valid exposition: a family's HELP and TYPE lines appear once each."""
    heads = [line for line in text.splitlines() if line.startswith(("# HELP ", "# TYPE "))]
    assert len(heads) == len(set(heads)), sorted(h for h in heads if heads.count(h) > 1)
    names = [line.split()[2] for line in heads if line.startswith("# TYPE ")]
    assert len(names) == len(set(names))
