"""One role process: pin it, load the model, then drive (edge) or serve (cloud).

The modules of a run: wire (the transfer format), peer (the bounded connection), probe
(link probes), compute (bundles on a torch device), process (role set-up), edge and
cloud (the two roles), plan and results (no torch), options (typed options).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from dime.capture.models import load_model, resolve_torch_device
from dime.run.cloud import run_cloud
from dime.run.edge import run_edge
from dime.run.options import EDGE_ROLE, RoleOptions
from dime.run.process import pin

log = logging.getLogger("dime.run")


def run_role(opts: RoleOptions, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run one role; the edge returns its result rows, the cloud none."""
    pin(opts.process.cores, opts.process.threads)
    device = resolve_torch_device(opts.process.torch_device)
    spec = opts.model
    model = load_model(spec.name, spec.weights, list(spec.cuts) if spec.cuts else None,
                       list(spec.input_shape) if spec.input_shape else None,
                       inputs=spec.inputs, layers=spec.layers, capture=spec.capture)
    if device.type != "cpu":
        # bundles share the captured model's parameters: moving it once moves them all
        model.to(device)
        log.info("%s runs its bundles on %s", opts.role, device)
    if opts.role == EDGE_ROLE:
        return run_edge(opts, model, device, on_row)
    run_cloud(opts, model, device)
    return []
