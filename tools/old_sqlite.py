#!/usr/bin/env python3
"""Run the test suite against an older SQLite library than this Python links, as the oldest systems miner
supports ship it: RHEL 8 (3.26), Ubuntu 20.04 (3.31), RHEL 9 and Debian 11 (3.34).

    python tools/old_sqlite.py 3.26 [PYTEST ARGS...]      # default: the whole suite, quietly

SQLite's own site is one download source too many for a machine that reaches only package indexes, so the
library is built from the amalgamation that the npm package better-sqlite3 carried in the release named below
(pinned by sha256), with the compile options those distributions use (JSON1, FTS, R*Tree, dbstat), into
``.old-sqlite/`` of the checkout; pytest then runs with that folder on LD_LIBRARY_PATH, which the sqlite3
module's shared library follows where Python was built against the system's libsqlite3 (Linux; a Python that
carries its own SQLite statically, as uv's do, is refused here). Needs a C compiler and the network once.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".old-sqlite"

# SQLite version -> (better-sqlite3 release whose deps/sqlite3.tar.gz holds it, sha256 of that npm tarball).
RELEASES = {
    "3.26": ("5.4.0", "65f1d67b43a2684e7b38fafc115c2c2672c7fa477390a07a959570643662a250"),
    "3.31": ("7.0.1", "a7d6ab8d150a8d38d49b948c5db41fd6ad0dba6a7120c5636b11ff8cb9e3b3f4"),
    "3.34": ("7.1.2", "a590bb248ced3b987c92cbaa798df47dabc62190c973121c4d07eff4d5780902"),
}

# As the distributions build it (Python 3.11's sqlite3 module needs sqlite3_serialize: DESERIALIZE before 3.36).
OPTIONS = ["-DSQLITE_ENABLE_JSON1", "-DSQLITE_ENABLE_FTS3", "-DSQLITE_ENABLE_FTS5", "-DSQLITE_ENABLE_RTREE",
           "-DSQLITE_ENABLE_DBSTAT_VTAB", "-DSQLITE_ENABLE_COLUMN_METADATA", "-DSQLITE_ENABLE_DESERIALIZE",
           "-DSQLITE_ENABLE_UNLOCK_NOTIFY", "-DSQLITE_SECURE_DELETE", "-DSQLITE_THREADSAFE=1"]


def build(version: str) -> Path:
    """The folder holding libsqlite3.so.0 of ``version``, built on first use."""
    release, sha256 = RELEASES[version]
    folder = CACHE / version
    lib = folder / "libsqlite3.so.0"
    if lib.exists():
        return folder
    url = f"https://registry.npmjs.org/better-sqlite3/-/better-sqlite3-{release}.tgz"
    print(f"fetching {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=120) as answer:
        package = answer.read()
    if hashlib.sha256(package).hexdigest() != sha256:
        sys.exit(f"{url}: sha256 differs from the pinned one")
    with tarfile.open(fileobj=io.BytesIO(package)) as outer:
        inner = outer.extractfile("package/deps/sqlite3.tar.gz")
        assert inner is not None
        with tarfile.open(fileobj=inner) as sources:
            member = next(m for m in sources.getmembers() if m.name.endswith("/sqlite3.c") or m.name == "sqlite3.c")
            source = sources.extractfile(member)
            assert source is not None
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "sqlite3.c").write_bytes(source.read())
    print(f"compiling SQLite {version}", file=sys.stderr)
    partial = folder / "libsqlite3.so.0.partial"
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-fPIC", "-shared", "-w", *OPTIONS, str(folder / "sqlite3.c"),
                    "-o", str(partial), "-lpthread", "-ldl", "-lm"], check=True)
    partial.rename(lib)
    return folder


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in RELEASES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(RELEASES)}}} [PYTEST ARGS...]")
    folder = build(argv[0])
    env = {**os.environ, "LD_LIBRARY_PATH": f"{folder}{os.pathsep}{os.environ.get('LD_LIBRARY_PATH', '')}"}
    probe = subprocess.run([sys.executable, "-c", "import sqlite3; print(sqlite3.sqlite_version)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not probe.startswith(argv[0] + "."):
        sys.exit(f"this Python's sqlite3 module still loads SQLite {probe}: it does not link the system's library")
    print(f"running the tests with SQLite {probe}", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "pytest", *(argv[1:] or ["-q"])], env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
