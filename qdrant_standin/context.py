"""What every handler works with: settings, data, snapshots and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from qdrant_standin.config import Settings
from qdrant_standin.metrics import RequestMetrics
from qdrant_standin.snapshots import SnapshotDir
from qdrant_standin.storage import Store


@dataclass
class Context:
    settings: Settings
    store: Store
    snapshots: SnapshotDir
    metrics: RequestMetrics
