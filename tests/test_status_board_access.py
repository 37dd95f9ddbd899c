"""The status board for the people reading it, on a real 127.0.0.1 server over a real SQLite store: the contrast of
its text in the light and dark schemes (WCAG 2 AA), as the page's own style block sets it; stopping its reloads;
what it says of a service it has heard nothing of, or of none; its times; gzip."""

from __future__ import annotations

import gzip
import http.client
import re
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

import httpx
from test_read_api import NOW, serving
from test_status_board import Board, Parsed, board, page  # noqa: F401  (fixture)

from miner.config import load_config
from miner.read_api import ReadApi
from miner.store import Store
from miner.timeutil import parse_iso

# The page background in each scheme: the page sets none, so it is the browser's canvas, white in the light scheme
# and, in the dark one (`color-scheme: light dark`), the lightest of Chrome's #121212, Firefox's #1c1b22 and
# Safari's #1e1e1e.
CANVAS = {"light": "#ffffff", "dark": "#1e1e1e"}
AA = 4.5  # normal-size text: the board's muted text is 0.85 to 1.1 rem, its badges' 600-weight text 1 rem


def luminance(colour: str) -> float:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    rgb = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def declarations(css: str, scheme: str) -> dict[str, dict[str, str]]:
    """Each selector's declarations, later rules over earlier ones, the dark scheme's media block applied in the
    dark scheme only, and var() resolved from :root."""
    dark = re.compile(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{((?:[^{}]*\{[^}]*\})*)\s*\}")
    blocks = dark.findall(css)
    rules = dark.sub("", css) + ("".join(blocks) if scheme == "dark" else "")
    found: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", rules):
        for declaration in filter(None, (d.strip() for d in body.split(";"))):
            key, value = (part.strip() for part in declaration.split(":", 1))
            for selector in selectors.split(","):
                found.setdefault(selector.strip(), {})[key] = value
    root = found.get(":root", {})
    return {selector: {k: re.sub(r"var\((--[\w-]+)\)", lambda m: root[m.group(1)], v) for k, v in d.items()}
            for selector, d in found.items()}


def test_the_boards_text_has_aa_contrast_in_either_scheme(board: Board) -> None:  # noqa: F811
    # Muted text (the index's summary, "No incident open: all 3 services OK", the providers, "None." and the footer)
    # was #777: 4.48 to 1 on white, 3.7 on a dark canvas; the "OK" badge's white on #2e8b57, 4.25 to 1.
    for path in ("/", "/services/WhatsApp"):
        html = httpx.get(board.base + path, timeout=10).text
        (css,) = re.findall(r"<style>(.*?)</style>", html, re.S)
        for scheme, canvas in CANVAS.items():
            rules = declarations(css, scheme)
            for selector in (".summary", ".muted", ".provider", "footer"):
                colour = rules[selector]["color"]
                assert contrast(colour, canvas) >= AA, (path, scheme, selector, colour)
            for badge in (".badge", ".badge.incident", ".badge.warn", ".badge.warming"):
                colour = rules[badge].get("color", rules[".badge"]["color"])
                background = rules[badge]["background"]
                assert contrast(colour, background) >= AA, (path, scheme, badge, colour, background)
        assert 'class="badge">OK</span>' in html or 'class="badge incident">' in html


def test_a_reader_can_stop_the_reloads_and_the_links_keep_them_stopped(board: Board) -> None:  # noqa: F811
    # A page reloaded itself every 60 s (<meta http-equiv="refresh">) with no way to stop it: each reload starts a
    # screen reader over from the top of the page and takes the keyboard back to it (WCAG 2.2.1, failure F41).
    with httpx.Client(base_url=board.base, timeout=10) as client:
        index = client.get("/")
        assert '<meta http-equiv="refresh" content="60">' in index.text
        stop = links(index.text)[1]  # the first link after the header's own, before anything the page lists
        assert stop == ("?refresh=off", "Stop reloading every 60 s")
        stopped = client.get(index.url.join(stop[0]))
        assert stopped.status_code == 200 and "http-equiv" not in stopped.text
        assert "This page does not reload itself." in stopped.text
        # Every link to a board page carries it: the service pages, the way back, their ?hours= choices.
        board_links = [href for href, _ in links(stopped.text)
                       if not href.startswith(("./api/", "../api/", "https://"))]
        assert board_links[0] == "./?refresh=off" and board_links[1] == "./"  # home; the toggle, back on
        assert board_links[2:] and all(href.endswith("?refresh=off") for href in board_links[2:])
        service = client.get(stopped.url.join(board_links[2]))
        assert service.status_code == 200 and "http-equiv" not in service.text
        hrefs = [href for href, _ in links(service.text)]
        assert "?hours=6&refresh=off" in hrefs and "../?refresh=off" in hrefs
        on = next(href for href, text in links(service.text) if text == "Reload every 60 s")
        assert on == "?hours=24"
        assert '<meta http-equiv="refresh" content="60">' in client.get(service.url.join(on)).text
        refused = client.get("/services/WhatsApp?refresh=5")
        assert refused.status_code == 400 and "refresh: must be off" in refused.text


def links(html: str) -> list[tuple[str, str]]:
    """Each link's href (its &amp; read as &) and text."""
    return [(href.replace("&amp;", "&"), text) for href, text in re.findall(r'<a [^>]*href="([^"]*)"[^>]*>(.*?)</a>',
                                                                            html)]


def test_each_service_says_when_its_latest_post_was(board: Board) -> None:  # noqa: F811
    # "OK, 0 complaints in the last hour" read the same for a quiet service and for one miner had heard nothing of
    # for days (its sources failing, or none watching it): a support agent could only read it as "not down". The API's
    # last_post_at is on the pages now.
    card = {words.split(" OK ")[0].split(" Incident ")[0].split(" No data ")[0]: words for words in (
        Parsed(li).words() for li in re.findall(r'<li class="card.*?</li>', page(board, "/")[0], re.S))}
    assert "(z-score 6.12); latest post about it 2026-11-27 12:03 UTC WhatsApp: " in card["WhatsApp (Meta)"]
    assert "; no baseline yet; no post about it stored yet Instagram: " in card["Instagram (Meta)"]
    assert "; no baseline yet; latest post about it 2026-11-27 09:07 UTC MTN Uganda: " in card["MTN Uganda"]
    html, _, parsed = page(board, "/services/MTN%20Uganda")
    assert '<time datetime="2026-11-27T09:07:30+00:00">2026-11-27 09:07 UTC</time>' in html
    assert "; latest post about it 2026-11-27 09:07 UTC. As of 2026-11-27 12:07 UTC." in parsed.words()


def test_a_board_of_no_service_says_none_is_watched(tmp_path: Path) -> None:
    # A config with no [[services]] is accepted (`miner config check`: 0 sources), and its board said "No incident
    # open: all 0 services OK", which read as everything up.
    cfg = tmp_path / "feeds.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "miner.sqlite"}"\n', encoding="utf-8")
    store = Store.open(tmp_path / "miner.sqlite")
    with closing(store), serving(ReadApi(load_config(cfg), lambda: store, lambda: None, lambda: NOW),
                                 board=True) as base:
        html, _, parsed = page(Board(base, store), "/")
    assert "OK" not in parsed.words() and "<ul" not in html
    assert ("Service status No service is watched: the config names none ([[services]]), as of 2026-11-27 12:07 UTC."
            in parsed.words())


class Times(HTMLParser):
    """Each time the page's body shows as text (2026-11-27 12:00 UTC), with the datetime of the <time> holding it, or
    None; a chart's (SVG) are its drawing, told in its aria-label."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, str | None]] = []
        self.found: list[tuple[str, str | None]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            self.open.append((tag, dict(attrs).get("datetime")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <line/>: nothing opened

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        tags = [tag for tag, _ in self.open]
        if "body" in tags and "svg" not in tags:
            held = self.open[-1][1] if tags[-1] == "time" else None
            self.found += [(shown, held) for shown in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", data)]


def test_every_time_on_a_page_is_a_time_element(board: Board) -> None:  # noqa: F811
    # The service page's table of the numbers gave each bucket's start as text only, though docs/api.md says every
    # time is in a <time> whose datetime is the ISO 8601 time.
    for path in ("/", "/services/WhatsApp", "/services/MTN%20Uganda?hours=168"):
        found = Times(page(board, path)[0]).found
        assert len(found) > 3
        for shown, held in found:
            assert held is not None and parse_iso(held).strftime("%Y-%m-%d %H:%M UTC") == shown, (path, shown, held)


def raw_get(base: str, path: str, encoding: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request with ``encoding`` as its Accept-Encoding, and the answer as sent (httpx would unpack it)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, headers={"Accept-Encoding": encoding})
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def test_a_client_that_takes_gzip_gets_the_pages_and_answers_gzipped(board: Board) -> None:  # noqa: F811
    # The index of 300 services was 1.2 MB of HTML, most of it the sparklines' points, reloaded every minute: 70 MB
    # an hour to a phone left on it. gzipped, 67 KB (5.5%); this board's four, 12 KB to 2.7 KB.
    for path in ("/", "/services/WhatsApp?hours=168", "/api/v1/services", "/api/v1/incidents"):
        status, plain_headers, plain = raw_get(board.base, path, "identity")
        assert status == 200 and "content-encoding" not in plain_headers
        for taken in ("gzip", "gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8, *;q=0.1", "*", "x-gzip"):
            status, headers, body = raw_get(board.base, path, taken)
            assert status == 200 and headers.get("content-encoding") == "gzip", (path, taken, len(plain))
            assert gzip.decompress(body) == plain and len(body) < len(plain) / 3
            assert headers["content-length"] == str(len(body))
            assert headers["vary"] == plain_headers["vary"] == "Accept-Encoding"  # for a proxy that keeps both
            assert raw_get(board.base, path, taken, "HEAD")[1]["content-length"] == str(len(body))
        for refused in ("gzip;q=0", "br", "*;q=0", "identity, gzip;q=0.000", ""):
            status, headers, body = raw_get(board.base, path, refused)
            assert "content-encoding" not in headers and body == plain, (path, refused)
    # An error page is small and sent as it is; so is what a page is shorter than http_gzip.MIN_SIZE.
    assert "content-encoding" not in raw_get(board.base, "/services/Nokia", "gzip")[1]
    assert "content-encoding" not in raw_get(board.base, "/api/v1/incidents?status=none", "gzip")[1]
