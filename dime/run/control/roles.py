"""One device process: pin it, load the model, then drive (the source) or serve (any other).

The modules of a run: wire (the transfer format), peer (the bounded connection among the
devices), program (what each device does for a query), pipeline (a device's threads for
one placement), chain (the source's queries in and out), probe (link probes), compute
(bundles on a torch device), process (device set-up), source and serve (the two kinds of
device), plan, placements and results (no torch), options (typed options).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from dime.capture.models import load_model, resolve_torch_device
from dime.run.control.process import pin
from dime.run.control.serve import serve
from dime.run.control.source import run_source
from dime.run.options import DeviceOptions

log = logging.getLogger("dime.run")


def run_device(opts: DeviceOptions, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run one device; the source returns its result rows, every other device none."""
    pin(opts.process.cores, opts.process.threads)
    device = resolve_torch_device(opts.process.torch_device)
    spec = opts.model
    model = load_model(spec.name, spec.weights, list(spec.cuts) if spec.cuts else None,
                       list(spec.input_shape) if spec.input_shape else None,
                       inputs=spec.inputs, layers=spec.layers, capture=spec.capture)
    if device.type != "cpu":
        # bundles share the captured model's parameters: moving it once moves them all
        model.to(device)
        log.info("%s runs its bundles on %s", opts.device, device)
    if opts.source:
        return run_source(opts, model, device, on_row)
    serve(opts, model, device)
    return []
