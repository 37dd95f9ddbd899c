"""Subjects of real alerts, resolve notices and digests over a real SMTP server: how they fold and read back."""

from __future__ import annotations

import re
from datetime import timedelta

from smtp_server import SmtpServer, smtp_server  # noqa: F401  (fixture)
from test_alerts_support import T0, open_incident, resolve, settings

from miner.alerts import dispatch, enqueue_digest_now, plan_notifications
from miner.alerts.settings import AlertSettings, RouteSettings, SmtpSettings
from miner.config import SourceConfig
from miner.store import Store


def mail_settings(server: SmtpServer, **overrides: object) -> AlertSettings:
    route = RouteSettings(name="oncall", email=("oncall@example.org",))
    smtp = SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5)
    return settings(routes=(route,), webhooks=(), smtp=smtp, group_wait=0.0, **overrides)


def subject_lines(raw: bytes) -> list[str]:
    """The Subject header's lines as sent: the first, then its continuation lines."""
    lines = raw.decode("ascii").replace("\r\n", "\n").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith((" ", "\t")))
    return lines[start:end]


def unfolded(lines: list[str]) -> str:
    """RFC 2047's reading of a folded value: whitespace between two encoded-words dropped, the words decoded."""
    import email.header

    value = "\r\n".join(lines)[len("Subject:"):]
    return str(email.header.make_header(email.header.decode_header(value)))


def check(server: SmtpServer, meant: list[str]) -> None:
    assert [str(m["Subject"]) for m in server.inbox.messages] == meant  # as Python's parser reads it
    for raw, subject in zip(server.inbox.raw, meant, strict=True):
        lines = subject_lines(raw)
        assert re.match(r"Subject: \S", lines[0]), lines  # starts on the Subject: line, no leading space
        for line in lines:
            # Folded only at a space: a line longer than 78 columns holds one word that cannot be cut.
            assert len(line) <= 78 or " " not in line.strip().removeprefix("Subject: "), lines
        if subject.isascii():
            assert "\r\n".join(lines).replace("\r\n", "") == f"Subject: {subject}"  # RFC 5322 unfolding
        else:
            assert all(line.isascii() for line in lines) and "=?utf-8?" in lines[0]
            assert unfolded(lines) == subject


def test_alert_and_resolve_subjects_start_on_the_subject_line_and_read_back_as_meant(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    meta = ["WhatsApp Business", "Instagram", "Facebook", "Messenger", "Threads", "Oculus"]
    accented = ["Télécom Ünïon 📡", "Orange España", "Türk Telekom", "Ålands Telekom", "Øresund Fibre"]
    providers = {**{name.lower(): "Meta" for name in meta}, **{name.lower(): "Télécom" for name in accented}}
    cfg = mail_settings(smtp_server, providers=providers)
    ids = [open_incident(store, name, T0, posts=False) for name in [*meta, *accented, "Deutsche Telekom Mobile"]]
    plan_notifications(store, cfg, T0)
    dispatch(store, cfg, T0, worker_id="w")
    later = T0 + timedelta(hours=1, minutes=10)
    for iid in ids:
        resolve(store, iid, later)
    plan_notifications(store, cfg, later)
    dispatch(store, cfg, later, worker_id="w")
    # What the renderer makes of them, each read back from the mail exactly so (a leading space, a lost or added
    # space around an encoded-word, fail).
    meant = ["[miner] OPEN: Deutsche Telekom Mobile outage reports (15.0x normal, z 8.4)",
             "[miner] OPEN: Télécom Ünïon 📡, Orange España, Türk Telekom, Ålands Telekom +1",
             "[miner] OPEN: WhatsApp Business, Instagram, Facebook, Messenger +2",
             "[miner] RESOLVED: Deutsche Telekom Mobile after 1 h 10 min",
             "[miner] RESOLVED: Télécom Ünïon 📡, Orange España, Türk Telekom, Ålands Telekom +1",
             "[miner] RESOLVED: WhatsApp Business, Instagram, Facebook, Messenger +2"]
    assert sorted(str(m["Subject"]) for m in smtp_server.inbox.messages) == meant
    check(smtp_server, [str(m["Subject"]) for m in smtp_server.inbox.messages])


def test_digest_subjects_start_on_the_subject_line_and_count_failing_sources_in_words(
        store: Store, smtp_server: SmtpServer) -> None:  # noqa: F811
    cfg = mail_settings(smtp_server)
    route = cfg.routes[0]
    open_incident(store, "WhatsApp", T0, posts=False)
    old = open_incident(store, "Airtel", T0 - timedelta(hours=3), posts=False)
    resolve(store, old, T0 - timedelta(hours=1))
    for n, at in ((1, T0), (12, T0 + timedelta(hours=1))):
        names = [f"feed-{i:02d}" for i in range(n)]
        store.sync_sources([SourceConfig(name=name, type="reddit", query="airtel") for name in names])
        for name in names:
            store.record_poll_failure(name, "HTTP 503", at, at + timedelta(minutes=5))
        enqueue_digest_now(store, cfg, route, at + timedelta(minutes=10))
        dispatch(store, cfg, at + timedelta(minutes=10), worker_id="w")
    one, twelve = (str(m["Subject"]) for m in smtp_server.inbox.messages)
    assert one == "[miner] Digest 2026-11-27 12:10 UTC: 1 open, 1 resolved, 1 source failing"
    assert twelve == "[miner] Digest 2026-11-27 13:10 UTC: 1 open, 0 resolved, 12 sources failing"
    check(smtp_server, [one, twelve])
