"""The aggregator's HTTP API (v1), one module per audience:

* ``public``: health, catalogue, report templates;
* ``nodes`` (signed messages, no tokens): enrol, long-poll for tasks, rotate a key, post a result;
* ``analysts`` (token): nodes and their budgets, rounds;
* ``admin`` (token): invites, removing and re-keying nodes;
* ``releases``: publishing and reading releases.
"""
