"""`miner run` takes its HTTP port before it imports the service: the real command in a subprocess, whose import of
miner.service a sitecustomize hook holds until the test lets it go, and real connections on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import reserved_port
from test_service import stop, wait_for

ROOT = Path(__file__).resolve().parent.parent

# Holds the first import of miner.service until the file $MINER_TEST_GATE exists (writing $MINER_TEST_GATE.held while
# it does), 120 s at most.
GATE_HOOK = '''
import os, sys, time

class _Gate:
    def find_spec(self, name, path=None, target=None):
        if name == "miner.service":
            sys.meta_path.remove(self)
            gate = os.environ["MINER_TEST_GATE"]
            open(gate + ".held", "w").close()
            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
        return None

sys.meta_path.insert(0, _Gate())
'''


@pytest.fixture
def held_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`miner run` with its HTTP endpoint on, held at its import of miner.service; its port; the gate to create to
    let it go on."""
    hook, gate = tmp_path / "hook", tmp_path / "gate"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(GATE_HOOK, encoding="utf-8")
    cfg = tmp_path / "feeds.toml"
    # A port known before the service binds it (port 0's would be logged only after the import held): reserved, as
    # one picked and let go could be taken first by anything else.
    with reserved_port() as port:
        cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n[server]\nenabled = true\nport = {port}\n'
                       '[[services]]\nname = "MTN"\n', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("MINER_CONFIG", "MINER_DB", "NOTIFY_SOCKET")}
        proc = subprocess.Popen([sys.executable, "-m", "miner", "--config", str(cfg), "run"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**env, "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}", "MINER_TEST_GATE": str(gate)})
        try:
            wait_for(lambda: Path(f"{gate}.held").exists(), proc=proc)
            yield proc, port, gate
        finally:
            gate.touch()
            stop(proc)


def test_run_listens_before_it_imports_the_service_and_answers_what_came_meanwhile(
        held_run: tuple[subprocess.Popen[str], int, Path]) -> None:
    # Bound only once the service was imported (0.3-0.6 s on 2 cores, after Python's start and the command line's
    # imports), the port refused connections for the first second of each start: a probe read the service as dead.
    proc, port, gate = held_run
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:  # refused before
        conn.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        assert proc.poll() is None and not gate.exists()  # still held at the import
        gate.touch()
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status in (200, 503), reply  # answered by the service: 503 "starting" while it starts, then 200
    assert json.loads(body)["status"] == ("ok" if status == 200 else "starting")


def test_the_command_line_loads_without_the_collectors_the_store_or_the_detector() -> None:
    # Each command module imported what its commands use at its top, and the command line loads every module: any
    # command, `miner run` included, waited 0.55 s for the collectors (httpx), the store and the detector before it
    # did anything, 0.3 s of it for modules that only `classify`, `digest`, `silence` and `detect` use.
    loaded = subprocess.run([sys.executable, "-c", "import sys, miner.cli; print(' '.join(sorted(sys.modules)))"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert "miner.cli" in modules
    assert not (heavy := modules & {"miner.collectors", "miner.store", "miner.detect", "miner.replay", "httpx"}), heavy


def test_reading_the_config_loads_neither_the_collectors_nor_the_model(tmp_path: Path) -> None:
    # Reading feeds.toml needs the settings of the collectors and of the classifier alone, but their packages loaded
    # every collector (httpx) and the model (numpy, ONNX Runtime): 0.2 s of a 2-core machine's time before `miner run`
    # could take its port, on top of the command line's 0.1 s, which `miner train`'s options spent loading the model.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text('[[services]]\nname = "MTN"\n[[sources]]\nname = "f"\ntype = "rss"\nurl = "http://127.0.0.1:9/f"\n'
                   '[classifier]\nthreshold = 0.4\n[collect]\nmax_workers = 2\n', encoding="utf-8")
    code = (f"import sys, miner.cli\nfrom miner.config import load_config\nload_config({str(cfg)!r})\n"
            "print(' '.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert {"miner.config", "miner.collectors.settings", "miner.classify.settings"} <= modules
    assert not (heavy := modules & {"httpx", "numpy", "onnxruntime", "miner.collectors.poller",
                                    "miner.classify.model"}), heavy
