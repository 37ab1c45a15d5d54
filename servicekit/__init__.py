"""Scaffolding the three services (node, aggregator, key holder) share and that needs a library
``protocol`` must not depend on (FastAPI, SQLAlchemy, Alembic). It may import ``protocol``; it
imports none of the services."""
