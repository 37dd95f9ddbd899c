"""`make bench`: every benchmark in turn. Each prints its numbers with the machine they came from (but the NAB
scores, which do not depend on it)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [
    ["collect_bench.py", "--store"],
    ["match_bench.py"],
    ["feed_text_bench.py"],
    ["classify_bench.py"],
    ["nab_bench.py"],  # its data from $MINER_SHARED_DATA, as the others
    ["power_bench.py"],  # power tweets against outage events, about 20 s
    ["replay_bench.py"],
    ["store_bench.py", "--posts", "500000", "--days", "30"],  # a third of the README's store: make bench stays short
    ["scale_bench.py", "--posts", "500000", "--services", "100", "--bucket-days", "30"],  # a fifth of the README's
    ["upgrade_bench.py"],  # 1 M posts, about 30 s
    ["start_probe_bench.py"],  # /healthz during `miner run`'s upgrade of 300,000 posts, about 20 s
    ["outbox_bench.py"],  # 105,000 outbox rows, about 30 s
]


def main(argv: list[str] | None = None) -> int:
    # No options, but --help (or a typo) must not start every benchmark, a run of many minutes.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    failed = 0
    for args in RUNS:
        print(f"\n== bench/{' '.join(args)}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / args[0]), *args[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
