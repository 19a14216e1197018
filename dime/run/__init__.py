"""Stage 5: run a placement for real (one process per device, real or shaped links) and validate it.

The folder reads top down, each subpackage one concern, imports pointing down only
(import-linter's acyclic-siblings contract holds for the subpackages as for the stages):

- the command lines and what they take, no torch: ``cli.py`` (``python -m dime.run``,
  ``python -m dime.run local``), ``options.py`` (the typed options), ``validate.py`` and
  ``report.py`` (``python -m dime.validate``), ``placements.py`` (solution files, splits,
  plan files) and ``plan.py`` (what every device agrees on), ``results.py`` (the CSV),
  ``measure.py`` (LoadGen). These stay at the top because every subpackage and every command
  uses them, and a reader of a command line finds them first.
- ``control/``: who drives. The local launcher (``local.py``, no torch), one device process
  (``roles.py``, ``process.py``), the source that drives a run (``source.py``), its placements
  behind one chain of queries, switched at a query boundary (``session.py``), its re-planning
  with --adapt (``adapt.py``), every other device (``serve.py``), the link probes the source
  orchestrates (``probe.py``).
- ``data/``: what moves between devices. The wire format (``wire.py``), the bounded connection
  (``peer.py``), what each device does for a query (``program.py``, no torch), bundles on a
  torch device (``compute.py``), a device's threads for one placement (``pipeline.py``), the
  source's queries in and out (``chain.py``) and the transfer reports behind its rate
  estimates (``reports.py``).
- ``links/``: how the links are made real and known, no torch: user-space pacing
  (``linkemu.py``), kernel shaping in network namespaces (``netns.py``, which also runs itself
  as ``python -m dime.run.links.netns`` inside a namespace for its rate probe), rates that
  change during a run (``schedule.py``) and rate estimates from a run's transfers
  (``estimate.py``).

``control`` imports ``data`` and ``links``; ``data`` imports ``links`` (the pacer); ``links``
imports neither. That is why the probe lives in ``control`` (it talks over the connection of
``data``) and the connection in ``data`` (every stream sends over it).
"""
