"""The cost model, links and placement text: what every stage shares (no torch, no solver)."""
