"""Who drives a run: the local launcher, a device process, the source, the other devices, link probes."""
