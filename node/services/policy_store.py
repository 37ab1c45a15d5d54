"""Policy set on the admin pages. It overrides node.env, is stored in the database (so backups
keep it) and every change is written to the audit log with the old and the new value.

The overrides are applied to the running node's settings object in place, so the answerer, the
secure party and the connector's report all see a change at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from node.services import audit
from node.settings import NodeSettings
from node.storage.db import transaction
from node.storage.models import PolicySetting

EDITABLE = (
    "allowed_dimensions",
    "max_cells",
    "max_rho_per_query",
    "budget_rho",
    "analyst_budget_rho",
    "secure_max_worst_rho",
    "secure_answers",
    "approval",
)

# The same types and limits as the settings themselves.
PolicyValues: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PolicyValues",
    **{
        name: (NodeSettings.model_fields[name].annotation, NodeSettings.model_fields[name])
        for name in EDITABLE
    },
)


class PolicyError(ValueError):
    """A policy value outside its limits; ``errors`` maps the setting to the reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def current(settings: NodeSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in EDITABLE}


def overrides(session: Session) -> dict[str, Any]:
    rows = session.scalars(select(PolicySetting).where(PolicySetting.name.in_(EDITABLE)))
    return {row.name: json.loads(row.value) for row in rows}


def apply(settings: NodeSettings, values: dict[str, Any]) -> None:
    checked = PolicyValues.model_validate({**current(settings), **values})
    for name in values:
        object.__setattr__(settings, name, getattr(checked, name))


def load(factory: sessionmaker[Session], settings: NodeSettings) -> None:
    """Apply the stored overrides to ``settings`` (at start-up)."""
    with factory() as session:
        stored = overrides(session)
    if stored:
        apply(settings, stored)


def change(
    factory: sessionmaker[Session], settings: NodeSettings, values: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """Validate, store and apply new values; returns {name: (old, new)} for what changed."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise PolicyError({name: "not a policy setting" for name in unknown})
    try:
        checked = PolicyValues.model_validate({**current(settings), **values})
    except ValidationError as exc:
        raise PolicyError(
            {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
        ) from None
    new = checked.model_dump(mode="json")
    old = {name: _jsonable(getattr(settings, name)) for name in EDITABLE}
    changed = {name: (old[name], new[name]) for name in values if old[name] != new[name]}
    if not changed:
        return {}
    now = datetime.now(UTC)
    with transaction(factory) as session:
        for name, (_, value) in changed.items():
            row = session.get(PolicySetting, name)
            if row is None:
                session.add(PolicySetting(name=name, value=json.dumps(value), updated_at=now))
            else:
                row.value = json.dumps(value)
                row.updated_at = now
        audit.append(
            session,
            audit.POLICY_CHANGE,
            at=now,
            changes={name: {"old": o, "new": n} for name, (o, n) in changed.items()},
        )
    for name in changed:
        object.__setattr__(settings, name, getattr(checked, name))
    return changed


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
