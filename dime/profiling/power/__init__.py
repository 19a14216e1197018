"""External power logs: the SmartPower3 logger and the join of timing rows with power."""
