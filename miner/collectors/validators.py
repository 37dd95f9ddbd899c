"""The validators (ETag, Last-Modified) a conditional GET sends from a source's state, and those a response leaves to
keep for the next poll."""

from __future__ import annotations

from miner.collectors.http import Response
from miner.records import SourceState


def conditional_headers(state: SourceState | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if state is not None:
        for name, value in (("If-None-Match", state.etag), ("If-Modified-Since", state.last_modified)):
            # A validator in Latin-1 or with a control character cannot be sent back (httpx refuses it, and every
            # later poll of that server failed): the source is fetched in full instead.
            if value and value.isascii() and value.isprintable():
                headers[name] = value
    return headers


def state_after(resp: Response, cursor: str | None = None, whole: bool = True) -> SourceState:
    """The validators to remember from a response (for the next conditional GET); none from a body known cut short
    (not ``whole``), which a cache may go on serving under them: a 304 until the resource changed, the rest unread;
    none from one whose compressed body came without its trailer (``resp.unchecked``): its data ended whole, but
    nothing proved it the server's whole body, and the next poll fetches it whole rather than be told it has it."""
    if not whole or resp.unchecked:
        return SourceState(cursor=cursor)
    return SourceState(etag=resp.headers.get("etag"), last_modified=resp.headers.get("last-modified"), cursor=cursor)
