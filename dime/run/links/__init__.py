"""How the links are made real and known (no torch): user-space pacing, kernel shaping, rate
schedules and rate estimates."""

SHAPER_USER = "user"  # user-space pacing at the sender, delay at the receiver (dime.run.links.linkemu)
SHAPER_NETNS = "netns"  # rates (and delays, with netem) by the kernel (dime.run.links.netns)
SHAPER_NETNS_USER_DELAY = "netns+user-delay"  # kernel rates, delays added in user space
SHAPERS = (SHAPER_USER, SHAPER_NETNS, SHAPER_NETNS_USER_DELAY)
