"""How the links are made real (no torch): user-space pacing and kernel shaping."""
