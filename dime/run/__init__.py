"""Stage 5: run a placement for real (roles, link emulation, measurement) and validate it."""
