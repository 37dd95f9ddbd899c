"""The `[store]` table: the SQLite file, how long posts and bucket rows are kept, the author-hash key's variable."""

from __future__ import annotations

from dataclasses import dataclass

from miner.env_names import ENV_NAME
from miner.settings import Conflict

MAX_RETENTION_DAYS = 36_500
# Bucket rows kept by default: over a year, so that a chart or query can compare with the same weeks a year ago.
DEFAULT_BUCKET_RETENTION_DAYS = 400


@dataclass(frozen=True)
class StoreSettings:
    path: str = "miner.sqlite"
    retention_days: int = 30  # raw posts older than this are pruned; incidents are kept
    # Bucket rows older than this are pruned (None: DEFAULT_BUCKET_RETENTION_DAYS, or retention_days when longer).
    bucket_retention_days: int | None = None
    hash_key_env: str = "MINER_HASH_KEY"  # env var with the key for hashing author handles

    @property
    def bucket_days(self) -> int:
        """Days of bucket rows kept: bucket_retention_days as given, else the default, but never fewer than the
        days of posts kept (a bucket is only final, never recounted, once its posts are pruned)."""
        if self.bucket_retention_days is not None:
            return self.bucket_retention_days
        return max(DEFAULT_BUCKET_RETENTION_DAYS, self.retention_days)

    def validate(self) -> None:
        if not self.path.strip():  # SQLite takes "" as a temporary database, deleted with everything in it on close
            raise ValueError("path: must name the SQLite file (the default is miner.sqlite)")
        for name in ("retention_days", "bucket_retention_days"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1")
            if value is not None and value > MAX_RETENTION_DAYS:  # beyond, the prune cut-off overflows a datetime
                raise ValueError(f"{name}: must be at most {MAX_RETENTION_DAYS} (100 years)")
        if self.bucket_retention_days is not None and self.bucket_retention_days < self.retention_days:
            # A bucket is recounted from its posts until they are pruned: rows deleted before then would come back.
            raise Conflict(f"bucket_retention_days: must be at least retention_days ({self.retention_days}): "
                           "buckets are counted from the posts kept", also=("retention_days",))
        if not ENV_NAME.fullmatch(self.hash_key_env):
            raise ValueError("hash_key_env: must name an environment variable, not hold the key itself")
