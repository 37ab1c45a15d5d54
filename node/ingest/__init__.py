"""Importing ticketing exports into the node database (design §4, "Data on a node").

* :mod:`~node.ingest.profile` — import profiles (TOML) describing one system's export;
* :mod:`~node.ingest.importer` — :func:`~node.ingest.importer.import_file`, atomic and
  idempotent;
* :mod:`~node.ingest.geo` — loading the operator's PC4 → municipality → province table;
* :mod:`~node.ingest.generate` — realistic made-up exports for tests and benchmarks.
"""
