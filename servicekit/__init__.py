"""Scaffolding the three services (node, aggregator, key holder) share and that needs a library
``protocol`` must not depend on (SQLAlchemy, Alembic). It imports none of the services."""
