"""Correlated services: openings close together in time within one group become one grouped incident.

Groups come from two places: the configured ``[[groups]]`` (name, services, cause) and, implicitly, every
provider shared by two or more services (``ServiceConfig.provider``), e.g. WhatsApp, Instagram and Facebook
with provider "Meta". Pure: the caller passes the recent openings; nothing is read or stored here.

An opening belongs to at most one grouped incident. Where candidate groups overlap (a configured group inside a
provider, two configured groups sharing a service), they are tried in order: configured groups as listed, then
providers by name; an opening already taken by an earlier group is not offered to the later ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from miner.config import GroupConfig, ServiceConfig
from miner.detect.params import DetectorParams


@dataclass(frozen=True)
class Opening:
    """One service's incident opening, as the lifecycle reported it."""

    service: str
    opened_at: datetime  # or re-opened: a re-opening is the moment the service failed again
    incident_id: int | None = None  # the caller's key, handed back in ``GroupIncident.openings``


@dataclass(frozen=True)
class GroupIncident:
    """Services of one group that opened within ``group_window_minutes`` of the first of them."""

    group: str
    cause: str  # the likely common cause to show
    services: tuple[str, ...]  # in order of opening
    opened_at: datetime  # the earliest opening
    last_opened_at: datetime
    openings: tuple[Opening, ...] = ()  # every opening in the run, a service that opened twice included


def candidate_groups(
    groups: Sequence[GroupConfig], services: Sequence[ServiceConfig]
) -> list[GroupConfig]:
    """Configured groups, then one group per provider with two or more services that no configured group
    already covers exactly."""
    out = list(groups)
    covered = {frozenset(s.lower() for s in g.services) for g in groups}
    # By the lower-case name, as alerts group and silence a provider: "Meta" and "meta" are one.
    providers: dict[str, tuple[str, list[str]]] = {}
    for svc in services:
        if svc.provider:
            providers.setdefault(svc.provider.lower(), (svc.provider, []))[1].append(svc.name)
    for _, (provider, names) in sorted(providers.items()):
        if len(names) >= 2 and frozenset(n.lower() for n in names) not in covered:
            out.append(GroupConfig(name=provider, services=tuple(names), cause=f"{provider} platform outage"))
    return out


def correlate(
    params: DetectorParams,
    openings: Sequence[Opening],
    groups: Sequence[GroupConfig],
    services: Sequence[ServiceConfig] = (),
) -> list[GroupIncident]:
    """Group incidents among ``openings``: for each group, runs of member openings each within
    ``group_window_minutes`` of the run's first, with at least ``group_min_services`` distinct services.
    Each opening is in at most one result: the first candidate group (see ``candidate_groups``) to take it."""
    window = timedelta(minutes=params.group_window_minutes)
    taken: set[int] = set()  # indexes into ``openings``: equal openings are still distinct incidents
    found: list[GroupIncident] = []
    for group in candidate_groups(groups, services):
        members = {s.lower() for s in group.services}
        mine = sorted((i for i, o in enumerate(openings) if o.service.lower() in members and i not in taken),
                      key=lambda i: openings[i].opened_at)
        k = 0
        while k < len(mine):
            first = openings[mine[k]].opened_at
            run = [i for i in mine[k:] if openings[i].opened_at - first <= window]
            names: list[str] = []
            for i in run:
                if openings[i].service.lower() not in {n.lower() for n in names}:
                    names.append(openings[i].service)
            if len(names) >= params.group_min_services:
                cause = group.cause or f"common cause across {group.name}"
                found.append(GroupIncident(group.name, cause, tuple(names), first, openings[run[-1]].opened_at,
                                           tuple(openings[i] for i in run)))
                taken.update(run)
                k += len(run)
            else:
                k += 1
    return sorted(found, key=lambda g: (g.opened_at, g.group))
