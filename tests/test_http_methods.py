"""Another method than GET or HEAD on a probe (/healthz, /livez, /readyz, /metrics): the real service on a loopback
socket, its store a real SQLite file, answers 405 with `Allow: GET, HEAD`, as on the read API and the board."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_api import status_of
from test_http_hosts import _ask, serving

from miner.service import Service

PROBES = ("/healthz", "/livez", "/readyz", "/metrics")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with serving(tmp_path, []) as svc:
        yield svc


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_probe_answers_another_method_405_allowing_get_and_head(service: Service, method: str) -> None:
    # They were 404 "POST is accepted on /report only" (PUT and the others the stdlib's 501), as if there were no such
    # resource, where GET /healthz answers.
    for path in PROBES:
        reply = _ask(service, f"{method} {path}?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: 2\r\n", b"{}")
        head, body = reply.split(b"\r\n\r\n", 1)
        assert status_of(reply) == 405 and b"\r\nAllow: GET, HEAD\r\n" in head + b"\r\n", (path, head)
        assert json.loads(body) == {"error": f"{method} is not allowed: {path} is read-only (GET or HEAD)"}
        assert status_of(_ask(service, f"GET {path} HTTP/1.1\r\nHost: x\r\n")) == 200


def test_another_path_is_still_404_for_post_and_501_for_other_methods(service: Service) -> None:
    # No resource there: 404; a method the endpoint supports on no resource: 501 (docs/operations.md).
    assert status_of(_ask(service, "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n")) == 404
    assert status_of(_ask(service, "PUT /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n")) == 501
