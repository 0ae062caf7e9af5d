"""The metric-name extractor the live alerting tests rely on."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

from promql_names import metric_names


def test_names_not_functions_labels_or_keywords() -> None:
    expr = (
        'sum by (instance) (rate(redis_evicted_keys_total{job="redis", x=~"a|b"}[5m])) > 0 '
        "and on (instance) redis_up == 1"
    )
    assert metric_names(expr) == {"redis_evicted_keys_total", "redis_up"}


def test_histogram_quantile_and_dashboard_variables() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) "
        '(rate(martha_store_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"martha_store_duration_seconds_bucket"}


def test_bare_selector_and_ratio() -> None:
    assert metric_names("pg_stat_activity_count / pg_settings_max_connections > 0.9") == {
        "pg_stat_activity_count",
        "pg_settings_max_connections",
    }
