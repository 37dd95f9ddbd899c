"""A login's user name left before the placeholder of the e-mail address the contact rule made of its password and
host ("admin:hunter2@nas.lan" stored as "admin:[email]"): taken out with it, in new posts and in those stored before,
and the text around an address that is no login's ("Note: [email]", "10:30", "email:[email]") kept as written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from test_text_links import rewritten_by

from miner.collectors.normalise import post_text

NOW = datetime.now(UTC).replace(microsecond=0)


def test_a_login_before_a_host_read_as_an_e_mail_address_keeps_no_user_name() -> None:
    # A host no link rule reads ("nas.lan", "server.internal"): the contact rule took the password and host for an
    # address, and the user name stayed before its placeholder.
    assert post_text("NAS down", "ssh admin:hunter2@nas.lan fails, root:toor@server.internal too", 1000) == (
        "NAS down. ssh [email] fails, [email] too")
    assert post_text("x", "db dbadmin:pa$$w0rd@pg.corp:5432 (svc_backup:s3cret@vault.home) too", 1000) == (
        "x. db [email]:5432 ([email]) too")
    # Text around an address that is no login's: a label, a time, a word and a space before it.
    kept = ("Note: [email], Re: [email], at 10:30 [email], 10:[email] 3:[email], email:[email], E-mail:[email], "
            "cc:[email] mailto:[email] sip:[email]")
    assert post_text("x", ("Note: jane@example.com, Re: bob@example.com, at 10:30 ann@example.com, "
                           "10:30@example.com 3:1@example.com, email:bob@example.com, E-mail:ops@10.0.0.1, "
                           "cc:jane@example.com mailto:jane@example.com sip:ann@example.com"), 1000) == f"x. {kept}"


def test_a_store_from_before_keeps_no_user_name_before_an_e_mail_address(tmp_path: Path) -> None:
    # Texts stored before as the collectors kept them then: before 0026 a login before any host without a scheme was
    # "admin:[email]", before 0022 one in a link too ("ftp://root:[email]/"), and, as now before 0027, one before a
    # host no link rule reads. The upgrade takes the user name (and what of the password is left) out, a batch at a
    # time, and leaves every other text as it was.
    path = tmp_path / "old.sqlite"
    logins = {"router admin:[email]/setup won't load": "router [email]/setup won't load",
              "ftp root:[email] fails, ftp://ops:[email]/pub too": "ftp [email] fails, ftp://[email]/pub too",
              "postgres://dbadmin:pa$$[email]:5432/prod refuses": "postgres://[email]:5432/prod refuses",
              "(svc_backup:[email]) and NAS nasadmin:[email].": "([email]) and NAS [email]."}
    kept = ["Note: [email], at 10:30 [email], 10:[email]", "email:[email], cc:[email] mailto:[email]",
            "RT @[user]: down again [email] https://t.co/AbCd1234", "status: down since 10:30, see 192.168.1.1/x"]
    stored = rewritten_by(path, "0027_email_logins", logins, kept)
    for name in (b"admin:", b"root:", b"ops:", b"dbadmin", b"pa$$", b"svc_backup", b"nasadmin"):
        assert name not in stored
