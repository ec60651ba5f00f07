"""llama-server's own /metrics (it runs with --metrics): read by the samplers for the
dashboard and by the prompt-cache keeper for the prompt speed a restore saves."""

from __future__ import annotations

import contextlib

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, float]:
    """llama-server's unlabelled `llamacpp:*` samples, keyed without the prefix."""
    values: dict[str, float] = {}
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("llamacpp:") and not sample.labels:
                    values[sample.name.removeprefix("llamacpp:")] = sample.value
    return values
