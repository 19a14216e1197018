"""What moves between devices: wire format, connection, programs, bundles, pipelines, the source's chain."""
