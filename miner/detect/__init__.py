"""Detection: pure functions over per-service complaint counts. ``now`` and timestamps are passed in; no I/O.

- :mod:`miner.detect.zscore`: the streaming robust z-score detector (``step``, ``detect_series``) and its
  JSON-serialisable ``DetectorState``;
- :mod:`miner.detect.grid`: the buckets a detector steps next (``due_buckets``);
- :mod:`miner.detect.incidents`: the incident lifecycle (``advance``) producing ``Transition`` records;
- :mod:`miner.detect.grouping`: correlated openings across a provider's services (``correlate``);
- :mod:`miner.detect.params`: ``DetectorParams``, the ``[detector]`` table of feeds.toml.
"""

from miner.detect.grid import due_buckets
from miner.detect.incidents import BucketFacts, IncidentDraft, Transition, advance, match_official
from miner.detect.params import DetectorParams
from miner.detect.zscore import BucketScore, DetectorState, detect_series, step

__all__ = [
    "BucketFacts",
    "BucketScore",
    "DetectorParams",
    "DetectorState",
    "IncidentDraft",
    "Transition",
    "advance",
    "detect_series",
    "due_buckets",
    "match_official",
    "step",
]
