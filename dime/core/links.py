"""Network links: the presets, the radio power model and the one parser of link texts.

A link text is a preset name (``3g``, ``4g``, ``wifi``) or ``UP/DOWN[/RTT]`` in Mbps and ms;
every command that takes a link reads it with :func:`parse_link`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dime.errors import UsageError

UP = "up"  # the edge sends
DOWN = "down"  # the edge receives


@dataclass(frozen=True)
class Link:
    """An edge-cloud network link and the edge radio's power model.

    Radio power while sending at rate r [Mbps]: (alpha_up * r + beta) / 1000 W
    (Huang et al., MobiSys'12); likewise receiving with alpha_down.
    """

    name: str
    uplink_mbps: float
    downlink_mbps: float
    alpha_up_mw_per_mbps: float = 0.0
    alpha_down_mw_per_mbps: float = 0.0
    beta_mw: float = 0.0
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        for attr in ("uplink_mbps", "downlink_mbps"):
            v = getattr(self, attr)
            if not (v > 0 and math.isfinite(v)):
                raise UsageError(f"link {self.name}: {attr} must be a positive number, got {v}")
        if self.rtt_ms < 0:
            raise UsageError(f"link {self.name}: rtt_ms must be >= 0, got {self.rtt_ms}")

    def rate_mbps(self, direction: str) -> float:
        return self.uplink_mbps if direction == UP else self.downlink_mbps

    def power_w(self, direction: str) -> float:
        alpha = self.alpha_up_mw_per_mbps if direction == UP else self.alpha_down_mw_per_mbps
        return (alpha * self.rate_mbps(direction) + self.beta_mw) / 1000.0

    def transfer_time_s(self, nbytes: int, direction: str) -> float:
        """Time on the wire, rtt excluded."""
        return nbytes * 8 / (self.rate_mbps(direction) * 1e6)

    def transfer_latency_s(self, nbytes: int, direction: str) -> float:
        return self.transfer_time_s(nbytes, direction) + self.rtt_ms / 2000.0

    def transfer_energy_j(self, nbytes: int, direction: str) -> float:
        return self.power_w(direction) * self.transfer_time_s(nbytes, direction)


# Huang et al., MobiSys'12, as used by JointDNN and DIME.
LINK_PRESETS: dict[str, Link] = {
    "3g": Link("3g", 1.1, 2.0275, 868.98, 122.12, 817.88),
    "4g": Link("4g", 5.85, 13.76, 438.39, 51.97, 1288.04),
    "wifi": Link("wifi", 18.88, 54.97, 283.17, 137.01, 132.86),
}


def get_link(
    name: str | None = None,
    uplink_mbps: float | None = None,
    downlink_mbps: float | None = None,
    rtt_ms: float | None = None,
) -> Link:
    """A preset by name, optionally with rates/rtt overridden, or a custom link from rates."""
    if name is not None:
        key = name.lower()
        if key not in LINK_PRESETS:
            raise UsageError(f"unknown link {name!r}; presets: {', '.join(LINK_PRESETS)}")
        base = LINK_PRESETS[key]
        return Link(
            base.name,
            uplink_mbps if uplink_mbps is not None else base.uplink_mbps,
            downlink_mbps if downlink_mbps is not None else base.downlink_mbps,
            base.alpha_up_mw_per_mbps,
            base.alpha_down_mw_per_mbps,
            base.beta_mw,
            rtt_ms if rtt_ms is not None else base.rtt_ms,
        )
    if uplink_mbps is None or downlink_mbps is None:
        raise UsageError("give --link or both --uplink-mbps and --downlink-mbps")
    # No radio power model is known for a custom link: its transfers cost no edge energy.
    return Link("custom", uplink_mbps, downlink_mbps, rtt_ms=rtt_ms or 0.0)


def parse_link(text: str, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
               rtt_ms: float | None = None) -> Link:
    """A preset name (3g, 4g, wifi) or UP/DOWN[/RTT] in Mbps and ms; explicit rates override."""
    text = text.strip()
    if "/" not in text:
        return get_link(text, uplink_mbps, downlink_mbps, rtt_ms)
    parts = text.split("/")
    try:
        nums = [float(x) for x in parts]
    except ValueError:
        raise UsageError(f"link {text!r}: give a preset or UP/DOWN[/RTT] in Mbps and ms") from None
    if len(nums) not in (2, 3):
        raise UsageError(f"link {text!r}: give a preset or UP/DOWN[/RTT] in Mbps and ms")
    rtt = rtt_ms if rtt_ms is not None else (nums[2] if len(nums) == 3 else 0.0)
    link = get_link(None, uplink_mbps or nums[0], downlink_mbps or nums[1], rtt)
    name = f"{link.uplink_mbps:g}up-{link.downlink_mbps:g}down" + (f"-{link.rtt_ms:g}ms" if link.rtt_ms else "")
    return dataclasses.replace(link, name=name)


def parse_links(text: str | None, uplink_mbps: float | None = None, downlink_mbps: float | None = None,
                rtt_ms: float | None = None, flag: str = "--links") -> list[Link]:
    """Links of a comma list (None: 4g, or a custom link when both rates are given); a list
    given but naming no link is refused, not taken for the default."""
    names = [s.strip() for s in text.split(",") if s.strip()] if text is not None else []
    if text is not None and not names:
        raise UsageError(f"{flag} {text!r}: names no link")
    if not names:
        if uplink_mbps and downlink_mbps:
            return [get_link(None, uplink_mbps, downlink_mbps, rtt_ms)]
        names = ["4g"]
    links = [parse_link(n, uplink_mbps, downlink_mbps, rtt_ms) for n in names]
    return list({(lk.name, lk.uplink_mbps, lk.downlink_mbps, lk.rtt_ms): lk for lk in links}.values())
