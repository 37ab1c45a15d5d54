"""The operator's login for the admin pages.

* The password is stored only as an scrypt hash (cryptography's Scrypt, n = 2^15, r = 8, p = 1,
  a random 16-byte salt), set by ``publieksdata node init`` or ``node admin-password``.
* A login creates a session: a random 32-byte token in a cookie (Secure, HttpOnly,
  SameSite=Strict); the database keeps only its SHA-256, with a random CSRF token that every form
  must echo. Sessions end after ``admin_session_idle_minutes`` without use, after
  ``admin_session_max_hours`` in all, or at logout.
* ``admin_max_failures`` failed logins within ``admin_lockout_minutes`` lock the login for
  ``admin_lockout_minutes`` from the last failure; failures and lockouts are in the audit log
  (with the time only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from node.services import audit
from node.settings import NodeSettings
from node.storage.db import transaction
from node.storage.models import AdminAccount, AdminLoginFailure, AdminSession

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD_LENGTH = 10


class PasswordTooWeak(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    digest = kdf.derive(password.encode("utf-8"))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        kdf = Scrypt(salt=_unb64(salt), length=32, n=int(n), r=int(r), p=int(p))
        kdf.verify(password.encode("utf-8"), _unb64(digest))
    except (ValueError, InvalidKey):
        return False
    return True


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordTooWeak(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    """A random password of four groups, easy to type: e.g. 'k7fq-2mzp-x9ad-4hwe'."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def set_password(factory: sessionmaker[Session], password: str) -> None:
    check_strength(password)
    hashed = hash_password(password)
    now = datetime.now(UTC)
    with transaction(factory) as session:
        account = session.get(AdminAccount, 1)
        if account is None:
            session.add(AdminAccount(id=1, password_hash=hashed, updated_at=now))
        else:
            account.password_hash = hashed
            account.updated_at = now
        session.execute(delete(AdminSession))  # a new password logs every browser out
        session.execute(delete(AdminLoginFailure))
        audit.append(session, audit.PASSWORD_SET, at=now)


def has_password(factory: sessionmaker[Session]) -> bool:
    with factory() as session:
        return session.get(AdminAccount, 1) is not None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str | None  # the session cookie's value on success
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActiveSession:
    token_sha256: str
    csrf: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class AdminAuth:
    def __init__(
        self,
        settings: NodeSettings,
        writer: sessionmaker[Session],
        reader: sessionmaker[Session],
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.reader = reader

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings.admin_session_idle_minutes)

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.settings.admin_session_max_hours)

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.settings.admin_lockout_minutes)

    def locked_until(self, session: Session, now: datetime) -> datetime | None:
        since = now - self.window
        failures = session.scalars(
            select(AdminLoginFailure.at)
            .where(AdminLoginFailure.at > since)
            .order_by(AdminLoginFailure.at.desc())
        ).all()
        if len(failures) >= self.settings.admin_max_failures:
            return _aware(failures[0]) + self.window
        return None

    def login(self, password: str, now: datetime | None = None) -> LoginResult:
        now = now or datetime.now(UTC)
        with transaction(self.writer) as session:
            locked = self.locked_until(session, now)
            if locked is not None:
                return LoginResult(token=None, locked_until=locked)
            account = session.get(AdminAccount, 1)
            if account is None or not check_password(password, account.password_hash):
                session.add(AdminLoginFailure(at=now))
                session.flush()
                audit.append(session, audit.LOGIN_FAILED, at=now)
                locked = self.locked_until(session, now)
                if locked is not None:
                    audit.append(session, audit.LOCKED_OUT, at=now, until=locked.isoformat())
                return LoginResult(token=None, locked_until=locked)
            session.execute(delete(AdminLoginFailure))
            session.execute(  # tidy up expired sessions
                delete(AdminSession).where(
                    (AdminSession.last_seen < now - self.idle)
                    | (AdminSession.created_at < now - self.lifetime)
                )
            )
            token = secrets.token_urlsafe(32)
            session.add(
                AdminSession(
                    token_sha256=token_hash(token),
                    csrf=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen=now,
                )
            )
            return LoginResult(token=token)

    def session(self, token: str | None, now: datetime | None = None) -> ActiveSession | None:
        """The live session for a cookie value (touching it), or None."""
        if not token or len(token) > 100:
            return None
        now = now or datetime.now(UTC)
        digest = token_hash(token)
        with self.reader() as session:
            row = session.get(AdminSession, digest)
            if row is None:
                return None
            created, seen, csrf = _aware(row.created_at), _aware(row.last_seen), row.csrf
        if now - seen > self.idle or now - created > self.lifetime:
            self.logout(token)
            return None
        if now - seen > timedelta(seconds=30):  # keep writes rare: touch at most twice a minute
            with transaction(self.writer) as session:
                row = session.get(AdminSession, digest)
                if row is not None:
                    row.last_seen = now
        return ActiveSession(token_sha256=digest, csrf=csrf)

    def logout(self, token: str) -> None:
        with transaction(self.writer) as session:
            session.execute(
                delete(AdminSession).where(AdminSession.token_sha256 == token_hash(token))
            )

    def sessions(self) -> int:
        with self.reader() as session:
            return int(session.scalar(select(func.count()).select_from(AdminSession)) or 0)


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
