"""Posts piped into `miner classify -` gzip-compressed come out as rows once their compressed bytes are in, while the
pipe stays open, as uncompressed ones do: GzipFile read the pipe 8 KiB at a time, waiting for all of it, and no row
came out before 4,096 lines (or the end of the input)."""

from __future__ import annotations

import gzip
import json
import os
import select
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _line(post_id: int, text: str) -> bytes:
    return json.dumps({"id": post_id, "text": text}).encode() + b"\n"


def test_gzip_posts_piped_in_come_out_while_the_pipe_stays_open(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "miner", "classify", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    got = b""

    def ids_out(count: int) -> list[object]:
        nonlocal got
        deadline = time.monotonic() + 60
        while got.count(b"\n") < count and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            if select.select([proc.stdout], [], [], 0.2)[0]:
                got += os.read(proc.stdout.fileno(), 1 << 16)
        return [json.loads(line)["id"] for line in got.decode().splitlines()]

    try:
        # A whole member (as `gzip -c` of a batch writes it), the pipe left open
        proc.stdin.write(gzip.compress(_line(1, "whatsapp is down") + _line(2, "calm down")))
        proc.stdin.flush()
        assert ids_out(2) == [1, 2]
        # A second member, written in a stream that flushes each post (Z_SYNC_FLUSH) and is not ended yet
        packer = zlib.compressobj(wbits=31)
        proc.stdin.write(packer.compress(_line(3, "power is out again")) + packer.flush(zlib.Z_SYNC_FLUSH))
        proc.stdin.flush()
        assert ids_out(3) == [1, 2, 3]
        proc.stdin.write(packer.compress(_line(4, "the bank app will not load")) + packer.flush())
        proc.stdin.close()
        got += proc.stdout.read()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert [json.loads(line)["id"] for line in got.decode().splitlines()] == [1, 2, 3, 4]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_gzip_members_piped_in_one_after_another_are_each_read_once(tmp_path: Path) -> None:
    # `cat a.gz b.gz |`: the first member's rows (over 64 KiB) are decompressed in two reads, and where the second
    # ended it, zlib leaves the bytes after the member in unconsumed_tail as well as in unused_data: both taken, the
    # next member came twice ("Not a gzipped file (b'\x1f\x1f')", or its rows over and over).
    first = b"".join(_line(i, "whatsapp is down again " * 200) for i in range(1, 21))
    assert len(first) > 1 << 16
    env = {k: v for k, v in os.environ.items() if k != "MINER_CONFIG"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "miner", "classify", "-"],
                          input=gzip.compress(first) + gzip.compress(_line(21, "calm down")),
                          capture_output=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [json.loads(line)["id"] for line in proc.stdout.decode().splitlines()] == list(range(1, 22))
