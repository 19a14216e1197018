"""Stage 2: profile bundles on a device (timing, DVFS settings, power meters) and read profiles."""
