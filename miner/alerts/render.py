"""Alert and digest emails: Jinja2 templates (autoescaped HTML, plain text), inline charts, proper headers.

The message is multipart/alternative: text/plain, then multipart/related holding the HTML and its PNG charts
referenced as ``cid:`` images, which mail clients show inline without fetching anything remote.
"""

from __future__ import annotations

import email.policy
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import jinja2

from miner.alerts.charts import incident_chart
from miner.alerts.content import (
    MAX_INCIDENTS,
    IncidentView,
    failing_sources,
    item_views,
    listed_failing,
    most_important,
)
from miner.alerts.digest_content import digest_incidents
from miner.alerts.digest_mutes import mute_notes
from miner.alerts.digest_officials import digest_officials, listed_officials
from miner.alerts.references import reply_references
from miner.alerts.settings import AlertSettings, RouteSettings
from miner.alerts.subject_header import SubjectHeader
from miner.alerts.text import clean_text, columns, idna_address, safe_url, wrap_columns
from miner.errors import MinerError
from miner.timeutil import counted, iso, parse_iso

if TYPE_CHECKING:
    from miner.store import Store


@dataclass(frozen=True)
class Rendered:
    """One rendered email: both bodies, the charts by content id, and the finished message."""

    subject: str
    text: str
    html: str
    images: dict[str, bytes]
    message: EmailMessage
    incidents: list[IncidentView] = field(default_factory=list)


RenderedDigest = Rendered


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("miner.alerts", "templates"),
        # Everything but the .txt templates is HTML: post text must never reach a browser unescaped.
        autoescape=lambda name: not (name or "").endswith(".txt"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # The text part is read in terminals too: lines of at most 78 columns, wide characters counted as two.
    env.filters["wrap_columns"] = wrap_columns
    env.filters["columns"] = columns
    env.filters["plural"] = counted  # "1 failure", "2 failures"
    return env


def _fmt_time(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    # A caller's "now" in its own zone (render_digest is public) is converted, not labelled UTC as it is.
    dt = parse_iso(value if isinstance(value, str) else iso(value))
    return dt.strftime("%Y-%m-%d %H:%M UTC")


def _context(settings: AlertSettings, **extra: Any) -> dict[str, Any]:
    return {"dashboard_url": safe_url(settings.dashboard_url) or "", "fmt_time": _fmt_time, **extra}


def _render(name: str, ctx: dict[str, Any]) -> str:
    return environment().get_template(name).render(ctx)


class _Verbatim(UnstructuredHeader, BaseHeader):
    """A header mail software reads only as written (an id, a URL): on one line, never RFC 2047-encoded.

    The default policy encodes an unstructured value that does not fit a 78-column line (=?utf-8?q?=3C...?=): an
    In-Reply-To with a domain of 37 characters no longer threaded, a Content-ID no longer showed its chart, a
    List-Unsubscribe URL of 76 no longer unsubscribed. RFC 5322 allows lines of 998.
    """

    def fold(self, *, policy: email.policy.Policy) -> str:
        value = str(self)
        if not value.isascii() or len(self.name) + 2 + len(value) > 998:
            return super().fold(policy=policy)
        return f"{self.name}: {value}{policy.linesep}"


_HEADERS = HeaderRegistry()
for _name in ("Content-ID", "In-Reply-To", "References", "List-Unsubscribe"):
    _HEADERS.map_to_type(_name, _Verbatim)
_HEADERS.map_to_type("Subject", SubjectHeader)

# Bodies in quoted-printable or base64, never raw 8-bit: smtplib sends without BODY=8BITMIME, so 8-bit text (an
# accent or emoji in a post) would break RFC 6152 and could be mangled by a 7-bit relay or break a DKIM signature.
_SEVEN_BIT = email.policy.default.clone(cte_type="7bit", header_factory=_HEADERS)


def build_email(settings: AlertSettings, route: RouteSettings, subject: str, text: str, html: str,
                images: dict[str, bytes], *, message_id: str, date: datetime, digest: bool,
                in_reply_to: str | None = None, references: Sequence[str] = ()) -> EmailMessage:
    msg = EmailMessage(policy=_SEVEN_BIT)
    msg["Subject"] = clean_text(subject, 200)
    # Domains in IDNA form: as written, a message sent without SMTPUTF8 carried bücher.example RFC 2047-encoded, an
    # address nobody can reply to (and From a domain DMARC cannot align).
    name, addr = parseaddr(settings.from_addr)
    msg["From"] = settings.from_addr if addr.isascii() else Address(display_name=name, addr_spec=idna_address(addr))
    msg["To"] = ", ".join(idna_address(a) for a in route.email)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    # RFC 3834: machine-generated, so vacation responders and ticket systems do not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Miner-Route"] = route.name
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        # The whole chain (references.py), not only the parent, or a client lacking the parent starts a thread.
        msg["References"] = " ".join(references) if references else in_reply_to
    if digest and route.list_unsubscribe:
        msg["List-Unsubscribe"] = f"<{route.list_unsubscribe}>"
        if route.list_unsubscribe.startswith("https://"):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    html_part = cast(EmailMessage, msg.get_payload()[1])  # type: ignore[index]
    for cid, png in images.items():
        # inline: a filename alone makes it an attachment, which clients list (and some show twice) beside the HTML.
        html_part.add_related(png, "image", "png", cid=f"<{cid}>", disposition="inline", filename=f"{cid}.png")
    return msg


MAX_CHARTS = 10  # of the MAX_INCIDENTS a message shows, the first this many get a chart
# Gmail clips an HTML part past 102 KB ("[Message clipped] View entire message"): the least important incidents,
# the digest's failing sources and the footer saying how to mute were cut off without a word in the message. Its
# charts are parts of their own and do not count. A margin for what a relay adds (a footer, a rewritten link).
MAX_HTML_BYTES = 90_000


def _left_out(total: int, shown: list[IncidentView], images: dict[str, bytes], *, charts: bool) -> dict[str, int]:
    """What the templates say the message leaves out: incidents not ``shown`` (beyond MAX_INCIDENTS, or
    MAX_HTML_BYTES), charts beyond MAX_CHARTS."""
    return {"total": total, "hidden": total - len(shown), "uncharted": len(shown) - len(images) if charts else 0}


def _fitted(views: list[IncidentView], images: dict[str, bytes], total: int, charts: bool,
            render: Callable[[dict[str, Any]], tuple[str, str]]) -> tuple[str, str, list[IncidentView],
                                                                         dict[str, bytes]]:
    """The text and HTML ``render`` makes of the most important of ``views`` (at most MAX_INCIDENTS) whose HTML
    stays under MAX_HTML_BYTES, at least one; both parts show the same incidents and say how many they leave out.
    ``render`` takes the templates' ``views``, ``images`` and the counts of :func:`_left_out`."""
    def attempt(n: int) -> tuple[str, str, list[IncidentView], dict[str, bytes]]:
        shown = views[:n]
        kept = {v.cid: images[v.cid] for v in shown if v.cid in images}
        text, html = render({"views": shown, "images": kept, **_left_out(total, shown, kept, charts=charts)})
        return text, html, shown, kept

    best = attempt(min(len(views), MAX_INCIDENTS))
    if len(best[1].encode()) <= MAX_HTML_BYTES or len(best[2]) <= 1:
        return best
    low, high = 1, len(best[2]) - 1  # the most that fit lies in [low, high]; one is shown however long
    best = attempt(1)
    while low < high:
        mid = (low + high + 1) // 2
        tried = attempt(mid)
        if len(tried[1].encode()) <= MAX_HTML_BYTES:
            low, best = mid, tried
        else:
            high = mid - 1
    return best


def _content_ids(views: list[IncidentView], message_id: str) -> list[IncidentView]:
    """Each chart's Content-ID, made of the incident's and the message's: RFC 2045 wants them world-unique, in the
    form of a Message-ID. A bare ``chart-17`` was neither, and was the same in every message about incident 17,
    whose chart changes from one digest to the next (a client keeping images by Content-ID showed an old one)."""
    token = message_id.strip().strip("<>")
    return [replace(v, cid=f"chart-{v.id}.{token}") for v in views]


def _charts(views: list[IncidentView], as_of: datetime) -> dict[str, bytes]:
    return {v.cid: incident_chart(v, as_of) for v in views[:MAX_CHARTS]}


def alert_subject(settings: AlertSettings, kind: str, views: list[IncidentView], *, reminder: bool = False) -> str:
    """One line an on-call engineer can triage from: what, how bad, and whether it is one outage or several."""
    prefix = settings.subject_prefix
    label = "STILL OPEN" if reminder else "OPEN"

    def names(vs: list[IncidentView]) -> str:
        return ", ".join(v.service for v in vs[:4]) + (f" +{len(vs) - 4}" if len(vs) > 4 else "")

    # Resolved by miner itself, not seen to end: "RESOLVED" said the outage was over.
    done = "CLOSED, NO LONGER TRACKED" if views and all(v.untracked for v in views) else "RESOLVED"
    # Resolved after miner's own downtime, its end unseen: "after 18 h 15 min" was a duration made of that downtime.
    unseen = bool(views) and all(v.unscored for v in views)
    note = ", END NOT SEEN" if unseen else ""
    if kind == "resolved":
        after = f" after {views[0].duration}" if len(views) == 1 and not unseen else ""
        return f"{prefix} {done}{note}: {names(views)}{after}"
    still_open = [v for v in views if v.status == "open"]
    if not still_open:  # an alert that went out late, in place of the resolve notice (suppressed)
        return f"{prefix} {done} SINCE{note}: {names(views)}"
    # An opening miner saw late (it was down, or caught up a backlog) must not read as an outage just begun.
    late = sum(1 for v in still_open if v.seen_late)
    if len(views) == 1:
        v = views[0]
        ratio = f"{v.ratio:.1f}x normal, " if v.ratio else ""
        label += " (seen late)" if late else ""
        return f"{prefix} {label}: {v.service} outage reports ({ratio}z {v.peak_score:.1f})"
    groups = {v.group for v in still_open}
    subject = f"{prefix} {label}: {names(still_open)}"
    if len(still_open) > 1 and len(groups) == 1 and "" not in groups:
        subject += f" ({groups.pop()})"
    if late:
        subject += f"; {'all' if late == len(still_open) else late} seen late"
    if len(views) > len(still_open):
        subject += f"; {len(views) - len(still_open)} already resolved"
    return subject


def alert_when(views: list[IncidentView]) -> str:
    """The alert heading's "when", true of every incident of the batch: "Detected" at the first one's opening said
    so of all of them, one opened an hour before the others too."""
    if len(views) == 1:
        v = views[0]
        # An opening miner saw late was not detected when it opened: "Detected" would say it had just begun.
        seen = ", seen late: miner was down or catching up" if v.seen_late else ""
        # A re-opening is news of its own time: "Detected" at the first opening read as that alert sent again.
        if v.news_at != v.opened_at:
            return f"Re-opened {_fmt_time(v.news_at)} (first detected {_fmt_time(v.opened_at)}){seen}."
        return f"Opened {_fmt_time(v.opened_at)}{seen}." if seen else f"Detected {_fmt_time(v.opened_at)}."
    first, last = min(v.news_at for v in views), max(v.news_at for v in views)
    late = sum(1 for v in views if v.seen_late)
    again = sum(1 for v in views if v.news_at != v.opened_at)
    when = "Opened" if late or again else "Detected"
    if first == last:
        when += f" {_fmt_time(first)}"
    else:
        to = f"{last:%H:%M} UTC" if first.date() == last.date() else _fmt_time(last)
        when += f" between {first:%Y-%m-%d %H:%M} and {to}"
    notes = ([f"{again} re-opened"] if again else []) + ([f"{late} seen late: miner was down or catching up"]
                                                           if late else [])
    if notes:
        when += f" ({'; '.join(notes)})"
    return when + ("; each incident's time is below." if first != last else ".")


def still_resolved(views: list[IncidentView]) -> list[IncidentView]:
    """The incidents a resolve notice may still say resolved: one open again by the time it goes out (a notice retried
    through an outage, or held by group_interval) is left out; its re-opening's alert has said so."""
    return [v for v in views if v.status == "resolved"]


def render_alert(store: Store, settings: AlertSettings, route: RouteSettings, kind: str,
                 items: list[dict[str, Any]], *, message_id: str, now: datetime) -> Rendered:
    """The immediate alert (kind 'alert': openings and repeats) or resolve notice for a batch of incidents."""
    views = item_views(store, settings, items, now)
    if not views:
        raise MinerError(f"notification {message_id}: its incidents are gone from the store")
    if kind == "resolved":
        views = still_resolved(views) or views
    views = _content_ids(most_important(views), message_id)
    repeats = {it["incident_id"] for it in items if it["kind"] == "repeat"}
    reminder = all(it["kind"] == "repeat" for it in items)
    subject = alert_subject(settings, kind, views, reminder=reminder)
    images = {} if kind == "resolved" else _charts(views, now)
    when = alert_when(views)  # of every incident of the batch, those the message leaves out too

    def render(shown: dict[str, Any]) -> tuple[str, str]:
        ctx = _context(settings, kind=kind, repeats=repeats, subject=subject, route=route.name, now=now, when=when,
                       **shown)
        return _render("alert.txt", ctx), _render("alert.html", ctx)

    text, html, _, images = _fitted(views, images, len(views), kind != "resolved", render)
    # A resolve notice or reminder is a reply to the alert of its incidents: one thread per outage in the mail
    # client, not a reminder every repeat_interval starting a thread of its own beside the alert and its resolve.
    # Incidents announced together (a provider's services, group_by) are one outage too: their resolve notice
    # started a thread of its own. Incidents of several alerts have no one alert to reply to.
    updates = kind == "resolved" or reminder
    parents = {store.open_message_id(route.name, v.id) for v in views} if updates else set()
    if not updates and all(v.reopened_at for v in views):
        # A re-opening is the same incident (the resolve notice's "after" counts from its first opening): its alert
        # started a thread of its own, apart from the opening and resolve before it, just when a flapping outage's
        # history is wanted.
        parents = {store.earlier_alert_id(route.name, v.id, message_id) for v in views}
    reply_to = parents.pop() if len(parents) == 1 else None
    refs = reply_references(store, route.name, reply_to, [v.id for v in views]) if reply_to else []
    msg = build_email(settings, route, subject, text, html, images, message_id=message_id, date=now, digest=False,
                      in_reply_to=reply_to, references=refs)
    return Rendered(subject, text, html, images, msg, views)


def render_digest(store: Store, settings: AlertSettings, now: datetime, route: RouteSettings | str, *,
                  since: datetime | None = None, message_id: str | None = None,
                  sent_at: datetime | None = None, sources: Collection[str] | None = None) -> RenderedDigest:
    """The digest of ``route`` as of ``now``: open incidents, those resolved since ``since``, failing sources.

    ``sent_at`` (default ``now``) is the Date header: a digest delayed by an outage keeps its content but is dated
    when it actually went out. ``sources``: the configured sources' names, so that sources removed from feeds.toml
    are not listed as failing (None: every source in the store).
    """
    if isinstance(route, str):
        found = settings.route(route)
        if found is None:
            raise MinerError(f"no alert route named {route!r} in [alerts] (routes: "
                             f"{', '.join(r.name for r in settings.routes) or 'none'})")
        route = found
    if message_id is None:
        from miner.alerts.planner import make_message_id

        message_id = make_message_id(settings)
    since = since or now - timedelta(days=1)
    covered = digest_incidents(store, settings, route.matches, since, now, limit=MAX_INCIDENTS)
    views = _content_ids(covered.views, message_id)
    failing = failing_sources(store, sources)
    officials = digest_officials(store, route.matches, since, now, sources)
    open_n, resolved_n = covered.open, covered.total - covered.open
    official_open = sum(o.open for o in officials)
    listed = listed_officials(officials, covered.open_services)
    headline = (f"{open_n} open, {resolved_n} resolved" if covered.total
                else f"{official_open} open on status pages" if official_open else "all quiet")
    subject = f"{settings.subject_prefix} Digest {_fmt_time(now)}: {headline}"
    if failing:
        subject += f", {len(failing)} source{'' if len(failing) == 1 else 's'} failing"
    images = _charts(views, now)
    mutes = mute_notes(store, settings, [v.service for v in views if v.status == "open"], now)

    def render(shown: dict[str, Any]) -> tuple[str, str]:
        ctx = _context(settings, failing=listed_failing(failing), failing_n=len(failing), since=since, now=now,
                       route=route.name, subject=subject, open_n=open_n, resolved_n=resolved_n, mutes=mutes,
                       services=route.services, officials=listed, officials_n=len(officials),
                       official_open=official_open, **shown)
        return _render("digest.txt", ctx), _render("digest.html", ctx)

    text, html, _, images = _fitted(views, images, covered.total, True, render)
    msg = build_email(settings, route, subject, text, html, images, message_id=message_id,
                      date=sent_at or now, digest=True)
    return Rendered(subject, text, html, images, msg, views)


def render_outbox_row(store: Store, settings: AlertSettings, row: dict[str, Any], now: datetime, *,
                      sources: Collection[str] | None = None) -> Rendered:
    """Render the email an outbox row stands for; content is read at send time, the Message-ID is the planned one."""
    route = settings.route(row["route"])
    if route is None:
        raise MinerError(f"route {row['route']!r} is no longer in [alerts].routes")
    if row["kind"] == "digest":
        payload = _payload(row)
        as_of = parse_iso(payload.get("as_of", iso(now)))
        since = parse_iso(payload["since"]) if payload.get("since") else None
        return render_digest(store, settings, as_of, route, since=since, message_id=row["message_id"], sent_at=now,
                             sources=sources)
    return render_alert(store, settings, route, row["kind"], store.notification_items(row["id"]),
                        message_id=row["message_id"], now=now)


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        value = json.loads(row.get("payload") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
