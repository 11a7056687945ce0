"""Contact pressure, pre-check: quiet hours, minimum delay, caps, suppression.

This stage reads the exposures fetched with the profile (no I/O) so that
`explain` can say which cap bites and what the policy ranks is what can be
shown. It is advisory: the commit stage re-checks the same caps, delay and
suppression atomically in Redis (store/pressure_store.reserve), which is
what stops two concurrent decides from both taking the last slot. Global
budgets are checked only there.

Windows slide: a cap of 3 per 86400 s counts the exposures whose time is in
(now - 86400 s, now], read from the injected clock (`situation.now_ms`).
Every item of a decision is one exposure of the person key it was counted on
(`situation.counted_key`).

The functions below are shared with the reservation so that the pre-check
and the atomic check name a refusal with the same words.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

from decision.catalog import Cap, Catalog, Channel, Offer, QuietHours, Suppression
from decision.domain import Candidate, Exposure, Removal, StageResult
from decision.rules.timezone import BadTimezone, local_time
from decision.stages import Situation

STAGE = "pressure"
# Exposures older than this are trimmed from `{p:<pk>}:x`: the longest window
# a cap, a delay or a suppression can use.
HORIZON_MS = 31 * 86_400_000

log = logging.getLogger(__name__)

SCOPES = ("offer", "offer_channel", "channel", "person")


# ---------------------------------------------------------------------------
# What a cap counts


def cap_group(cap: Cap) -> tuple[str, ...]:
    """The channels a cap is restricted to, counted together; () = all."""
    return cap.channels or ((cap.channel,) if cap.channel else ())


def cap_filter(cap: Cap, offer_id: str, channel: str) -> tuple[str, tuple[str, ...]] | None:
    """What an exposure must match to count against `cap` when deciding
    `offer_id` on `channel`: (offer, channels), "" / () matching anything.
    None when the cap does not apply to this candidate (its channel is not
    in the cap's group). An unknown scope counts like "person": fail closed."""
    group = cap_group(cap)
    if group and channel not in group:
        return None
    if cap.scope == "offer":
        return offer_id, group
    if cap.scope == "offer_channel":
        return offer_id, (channel,)
    if cap.scope == "channel":
        return "", (channel,)
    return "", group


def caps_for(catalog: Catalog, offer: Offer, channel: str) -> tuple[tuple[Cap, str, tuple[str, ...]], ...]:
    """Every cap that applies to the candidate with its filter, offer caps
    first; worked out once per catalog, offer and channel (catalog.memo)."""
    key = ("caps", offer.id, channel)
    hit = catalog.memo.get(key)
    if hit is not None and hit[0] is offer:
        return hit[1]
    found = []
    for cap in (*offer.caps, *catalog.person_caps):
        f = cap_filter(cap, offer.id, channel)
        if f is not None:
            found.append((cap, f[0], f[1]))
    out = tuple(found)
    catalog.memo[key] = (offer, out)
    return out


def count_matching(exposures: Iterable[Exposure], offer: str, channels: tuple[str, ...], since_ms: int) -> int:
    return sum(
        1 for x in exposures
        if x.at_ms > since_ms and (not offer or x.offer_id == offer) and (not channels or x.channel in channels)
    )


def last_on_channel(exposures: Iterable[Exposure], channel: str) -> int | None:
    last = None
    for x in exposures:
        if x.channel == channel and (last is None or x.at_ms > last):
            last = x.at_ms
    return last


def ignored_exposures(exposures: Iterable[Exposure], positive_rewards: Mapping[str, int], offer_id: str,
                      window_s: int, now_ms: int) -> int:
    """Exposures of the offer within the window and after its latest positive
    reward: the ones the person ignored."""
    since = now_ms - window_s * 1000
    rewarded = positive_rewards.get(offer_id)
    if rewarded is not None and rewarded > since:
        since = rewarded
    return count_matching(exposures, offer_id, (), since)


def suppressed(exposures: Sequence[Exposure], positive_rewards: Mapping[str, int], offer_id: str,
               suppression: Suppression | None, now_ms: int) -> int | None:
    """The number of ignored exposures when the offer is suppressed, else None."""
    if suppression is None or suppression.after_ignored <= 0:
        return None
    n = ignored_exposures(exposures, positive_rewards, offer_id, suppression.window_s, now_ms)
    return n if n >= suppression.after_ignored else None


# ---------------------------------------------------------------------------
# The words of a refusal (pre-check and reservation alike)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def quiet_range(q: QuietHours) -> str:
    return f"{_hhmm(q.start_minute)}-{_hhmm(q.end_minute)}"


def in_quiet_hours(q: QuietHours, minute_of_day: int) -> bool:
    if q.start_minute < q.end_minute:
        return q.start_minute <= minute_of_day < q.end_minute
    if q.start_minute > q.end_minute:  # wraps midnight
        return minute_of_day >= q.start_minute or minute_of_day < q.end_minute
    return False


def cap_rule(cap: Cap, count: int) -> str:
    return f"{cap.name} (count {count})"


def cap_detail(cap: Cap, offer_id: str, channel: str, counted_key: str) -> str:
    group = cap_group(cap)
    on = f" on {'+'.join(group)}" if group else ""
    what = {
        "offer": f"exposures of offer {offer_id}{on}",
        "offer_channel": f"exposures of offer {offer_id} on {channel}",
        "channel": f"exposures on {channel}",
    }.get(cap.scope, f"exposures{on or ' on all channels'}")
    return f"{what} in the last {cap.window_s}s, counted on {counted_key}"


def delay_rule(channel: str, min_delay_s: int, last_ms: int, now_ms: int) -> str:
    return f"min delay {channel} {min_delay_s}s (last contact {max(0, now_ms - last_ms) // 1000}s ago)"


def suppression_rule(offer_id: str, s: Suppression, ignored: int) -> str:
    return f"suppression {offer_id} after {s.after_ignored} ignored/{s.window_s}s (ignored {ignored})"


SUPPRESSION_DETAIL = "exposures since the latest positive reward within the window, counted on {key}"


# ---------------------------------------------------------------------------
# The stage


def _quiet_verdict(situation: Situation, channel: Channel,
                   cache: dict[str, tuple[str, str] | None]) -> tuple[str, str] | None:
    q = channel.quiet_hours
    if q is None:
        return None
    if channel.id in cache:
        return cache[channel.id]
    warned = bool(cache)  # one warning per request is enough
    profile = situation.profile
    tz_name = profile.attributes.get("timezone") or "UTC"
    try:
        local = local_time(profile, situation.now_ms)
    except BadTimezone:
        if not warned:
            log.warning("unknown timezone %r on %s: channels with quiet hours removed",
                        profile.attributes.get("timezone"), profile.key)
        verdict: tuple[str, str] | None = (
            f"quiet hours {channel.id} {quiet_range(q)} (timezone {tz_name!r} unknown)",
            "the profile's timezone is not an IANA zone name, so its local time is unknown; "
            "the channel is not used rather than risk contacting at night",
        )
    else:
        minute = local.hour * 60 + local.minute
        verdict = None
        if in_quiet_hours(q, minute):
            verdict = (f"quiet hours {channel.id} {quiet_range(q)} (local {_hhmm(minute)} {tz_name})",
                       "no contact on this channel during the person's quiet hours")
    cache[channel.id] = verdict
    return verdict


def _static(catalog: Catalog, c: Candidate) -> tuple[Offer, Channel, tuple[tuple[Cap, str, tuple[str, ...]], ...]]:
    """The candidate's offer, channel and caps, once per catalog (catalog.memo;
    the entry keeps its candidate alive, so the id stays its own)."""
    key = ("pressure", id(c))
    hit = catalog.memo.get(key)
    if hit is not None and hit[0] is c:
        return hit[1]
    offer = catalog.offers[c.offer_id]
    # An unknown channel (hand-built catalogs only: the loader refuses them) is outbound.
    channel = catalog.channels.get(c.channel) or Channel(id=c.channel, outbound=True)
    static = (offer, channel, caps_for(catalog, offer, c.channel))
    catalog.memo[key] = (c, static)
    return static


def apply(situation: Situation, candidates: tuple[Candidate, ...]) -> StageResult:
    catalog = situation.catalog
    profile = situation.profile
    now = situation.now_ms
    key = situation.counted_key
    exposures = profile.exposures
    quiet_cache: dict[str, tuple[str, str] | None] = {}
    # Candidates share most counts (a person cap is the same for all of them),
    # and each count only scans the exposures of its (offer, channel) bucket.
    counts: dict[tuple[str, tuple[str, ...], int], int] = {}
    last_seen: dict[str, int | None] = {}
    buckets: dict[tuple[str, str], list[int]] = {}
    if exposures:
        for e in exposures:
            for k in ((e.offer_id, e.channel), (e.offer_id, ""), ("", e.channel), ("", "")):
                buckets.setdefault(k, []).append(e.at_ms)
    spent = situation.spent_budgets
    survivors: list[Candidate] = []
    removed: list[Removal] = []
    for c in candidates:
        offer, channel, caps = _static(catalog, c)
        reason: Removal | None = None

        if spent and c.offer_id in spent:
            reason = Removal(c, STAGE, f"budget {c.offer_id} spent",
                             "global budget of the offer, all persons: spent at a recent reservation")

        if reason is None and channel.quiet_hours is not None:
            quiet = _quiet_verdict(situation, channel, quiet_cache)
            if quiet is not None:
                reason = Removal(c, STAGE, quiet[0], quiet[1])

        if reason is None and channel.min_delay_s > 0 and exposures:  # no exposure: no last contact
            if c.channel not in last_seen:
                last_seen[c.channel] = last_on_channel(exposures, c.channel)
            last = last_seen[c.channel]
            if last is not None and now - last < channel.min_delay_s * 1000:
                reason = Removal(c, STAGE, delay_rule(c.channel, channel.min_delay_s, last, now),
                                 f"last contact on {c.channel} counted on {key}")

        if reason is None:
            for cap, f_offer, f_channels in caps:
                if not exposures:  # nothing to count (a person seen for the first time in a month)
                    n = 0
                else:
                    k = (f_offer, f_channels, cap.window_s)
                    n = counts.get(k)
                    if n is None:
                        since = now - cap.window_s * 1000
                        n = counts[k] = sum(1 for ch in (f_channels or ("",))
                                            for t in buckets.get((f_offer, ch), ()) if t > since)
                if n >= cap.limit:
                    reason = Removal(c, STAGE, cap_rule(cap, n), cap_detail(cap, offer.id, c.channel, key))
                    break

        if reason is None and offer.suppression is not None and exposures:
            n = suppressed(exposures, profile.positive_rewards, offer.id, offer.suppression, now)
            if n is not None:
                reason = Removal(c, STAGE, suppression_rule(offer.id, offer.suppression, n),
                                 SUPPRESSION_DETAIL.format(key=key))

        if reason is None:
            survivors.append(c)
        else:
            removed.append(reason)
    return StageResult(tuple(survivors), tuple(removed))
