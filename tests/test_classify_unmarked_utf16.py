"""UTF-16 or UTF-32 without a byte-order mark (`iconv -t UTF-16LE`, .NET's UnicodeEncoding without one) is refused
whole, as it is with one: read as UTF-8, 3 posts gave 4 error rows ("invalid JSON" each, the last newline's other
bytes a line of their own), and the -o file was replaced by them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from miner.cli import main


@pytest.mark.parametrize("encoding", ["UTF-16LE", "UTF-16BE", "UTF-32LE", "UTF-32BE"])
def test_utf16_or_utf32_without_a_byte_order_mark_is_refused_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./feeds.toml: classify needs no config
    monkeypatch.delenv("MINER_CONFIG", raising=False)
    text = "".join(json.dumps({"id": i, "text": "whatsapp is down"}) + "\n" for i in range(3))
    src, packed, out = tmp_path / "posts.jsonl", tmp_path / "posts.jsonl.gz", tmp_path / "out.jsonl"
    src.write_bytes(text.encode(encoding))
    packed.write_bytes(gzip.compress(src.read_bytes()))
    for name in (src, packed):
        out.write_text("rows of an earlier run\n")
        result = CliRunner().invoke(main, ["classify", str(name), "-o", str(out)])
        assert result.exit_code == 1, result.output
        assert result.stderr.endswith(f"Error: the input is {encoding} without a byte-order mark (NULs beside its "
                                      f"first '{{'), not UTF-8: convert it first (iconv -f {encoding} -t UTF-8)\n")
        assert out.read_text() == "rows of an earlier run\n"
        assert set(tmp_path.iterdir()) == {src, packed, out}
