"""Rounds: one query sent to many nodes, with a deadline and a quorum (see ``service``)."""
