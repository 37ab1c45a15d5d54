"""The node's admin pages (/admin): what the institution's operator sees, in Dutch or English.

    /admin/                     overview: connection, budget gauge, waiting questions, log status
    /admin/login, /logout       the operator's login (node/services/admin_auth.py)
    /admin/data                 imports, date range, data quality with advice, retention
    /admin/import               upload an export; /admin/import/{job} shows progress and rejects
    /admin/approvals            questions waiting for approval, with approve and decline
    /admin/audit                the hash-chained audit log; /admin/audit.csv exports it
    /admin/policy               the policy editor and the trusted keys
    /admin/privacy-requests     GDPR access and erasure
    /admin/benchmark            our exact figures next to the latest sector release
    /admin/lang/{nl|en}         switch language (a cookie)
    /admin/static/…             our own CSS (no external CDN, no JavaScript)

Every page needs a session except login and static files; every POST needs the session's CSRF
token. Only loopback clients are served unless ``admin_remote`` is set. Responses are never
cached and may not be framed.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import UploadFile

from node.deps import NodeState
from node.identity import load_secret
from node.link import load_link
from node.services import approvals, audit, ledger, policy_store
from node.services.admin_auth import ActiveSession, AdminAuth, csrf_ok, has_password
from node.services.approvals import DecisionError
from node.services.benchmark import BenchmarkUnavailable, compare
from node.services.datastatus import budget_history, data_status
from node.services.gdpr import count_person, export_person, forget_person
from node.services.trust import trusted_keys, untrust_key
from node.storage.db import transaction
from node.storage.models import GdprRequest, LedgerEntry
from node.web import i18n
from protocol.catalogue import DIMENSIONS
from protocol.signing import fingerprint, public_key_from_text

router = APIRouter(prefix="/admin", include_in_schema=False)
log = logging.getLogger("publieksdata.node.admin")

SESSION_COOKIE = "pd_admin"
LOGIN_COOKIE = "pd_login"
LANG_COOKIE = "pd_lang"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
VALUES_SHOWN = 60  # cells of an answer shown on the audit page (the CSV has everything)

_env = Environment(
    loader=PackageLoader("node.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(number=i18n.number, percent=i18n.percent, moment=i18n.moment, day=i18n.day)


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


class _Forbidden(Exception):
    pass


def install(app: FastAPI) -> None:
    """Mount the admin pages on the node app."""
    app.include_router(router)

    @app.exception_handler(_Redirect)
    async def _redirect(_request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.url, status_code=303, headers=SECURITY_HEADERS)

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, _exc: _Forbidden) -> Response:
        lang = _lang(request)
        return HTMLResponse(
            f"<!doctype html><html lang={lang}><title>403</title><h1>403</h1>"
            f"<p>{i18n.t(lang, 'remote_refused')}</p></html>",
            status_code=403,
            headers=SECURITY_HEADERS,
        )


# --- request context --------------------------------------------------------------------------


def _state(request: Request) -> NodeState:
    state: NodeState = request.app.state.node
    return state


def _lang(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in i18n.LANGS:
        return chosen
    accept = request.headers.get("accept-language", "").lower()
    return "en" if accept.startswith("en") else "nl"


def _guard(request: Request) -> NodeState:
    state = _state(request)
    if not state.settings.admin_enabled:
        raise _Redirect("/")  # falls through to the API's 404
    if not state.settings.admin_remote:
        host = request.client.host if request.client else ""
        try:
            loopback = ip_address(host).is_loopback
        except ValueError:
            loopback = host in ("localhost", "testclient")
        if not loopback:
            raise _Forbidden
    return state


def _auth(state: NodeState) -> AdminAuth:
    return AdminAuth(state.settings, state.writer, state.reader)


@dataclass
class Ctx:
    request: Request
    state: NodeState
    lang: str
    session: ActiveSession
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)

    def t(self, key: str, **values: Any) -> str:
        return i18n.t(self.lang, key, **values)


def _ctx(request: Request) -> Ctx:
    state = _guard(request)
    token = request.cookies.get(SESSION_COOKIE)
    active = _auth(state).session(token)
    if active is None:
        raise _Redirect("/admin/login?expired=1" if token else "/admin/login")
    return Ctx(request=request, state=state, lang=_lang(request), session=active)


async def _actx(request: Request) -> Ctx:
    """``_ctx`` for async routes: its database reads and writes run in a worker thread, so a
    busy database never blocks the node's event loop (and with it the aggregator connection)."""
    return await to_thread.run_sync(_ctx, request)


async def _form(request: Request, ctx: Ctx) -> dict[str, Any]:
    form = await request.form()
    if not csrf_ok(ctx.session.csrf, _text(form.get("csrf"))):
        raise _Redirect(f"{request.url.path}?csrf=1")
    return dict(form)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _waiting_count(state: NodeState) -> int:
    return len(state.approvals.waiting())


def _render(ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    if ctx.request.query_params.get("csrf"):
        ctx.flash.append(("error", ctx.t("csrf_failed")))
    page = _env.get_template(template).render(
        lang=ctx.lang,
        other="en" if ctx.lang == "nl" else "nl",
        t=ctx.t,
        csrf=ctx.session.csrf,
        path=ctx.request.url.path,
        institution=ctx.state.settings.institution,
        waiting=_waiting_count(ctx.state),
        flash=ctx.flash,
        kind_label=lambda kind: i18n.kind_label(ctx.lang, kind),
        policy_change=lambda changes: i18n.policy_change(ctx.lang, changes),
        code_label=lambda dimension, code: i18n.code_label(dimension, code, ctx.lang),
        small=lambda value: i18n.small(value, ctx.lang),
        field_value=lambda value: i18n.field_value(value, ctx.lang),
        **values,
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


# --- login -----------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    state = _guard(request)
    lang = _lang(request)
    token = secrets.token_urlsafe(24)
    messages = []
    if request.query_params.get("expired"):
        messages.append(("info", i18n.t(lang, "expired")))
    if not has_password(state.reader):
        messages.append(("error", i18n.t(lang, "no_password")))
    return _login_response(request, state, lang, token, messages)


def _login_response(
    request: Request,
    state: NodeState,
    lang: str,
    token: str,
    messages: list[tuple[str, str]],
    status: int = 200,
) -> HTMLResponse:
    page = _env.get_template("login.html").render(
        lang=lang,
        other="en" if lang == "nl" else "nl",
        t=lambda key, **v: i18n.t(lang, key, **v),
        login_token=token,
        flash=messages,
        institution=state.settings.institution,
        path=request.url.path,
    )
    response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
    _set_cookie(response, state, LOGIN_COOKIE, token, max_age=3600)
    return response


def _set_cookie(
    response: Response, state: NodeState, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/admin",
        secure=state.settings.admin_cookie_secure,
        httponly=True,
        samesite="strict",
    )


@router.post("/login")
async def login(request: Request) -> Response:
    state = _guard(request)
    lang = _lang(request)
    form = await request.form()
    fresh = secrets.token_urlsafe(24)
    if not csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), _text(form.get("login_token"))):
        return _login_response(
            request, state, lang, fresh, [("error", i18n.t(lang, "csrf_failed"))], 400
        )
    password = _text(form.get("password")) or ""
    result = await to_thread.run_sync(_auth(state).login, password)
    if result.token is None:
        messages = [("error", i18n.t(lang, "login_failed"))]
        status = 401
        if result.locked_until is not None:
            messages = [
                ("error", i18n.t(lang, "locked", until=i18n.moment(result.locked_until, lang)))
            ]
            status = 429
        return _login_response(request, state, lang, fresh, messages, status)
    response = RedirectResponse("/admin/", status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(response, state, SESSION_COOKIE, result.token)
    response.delete_cookie(LOGIN_COOKIE, path="/admin")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = await _actx(request)
    await _form(request, ctx)
    await to_thread.run_sync(_auth(ctx.state).logout, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/admin/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str) -> Response:
    _guard(request)
    back = request.query_params.get("back", "/admin/")
    if not back.startswith("/admin") or "//" in back:
        back = "/admin/"
    response = RedirectResponse(back, status_code=303, headers=SECURITY_HEADERS)
    if code in i18n.LANGS:
        response.set_cookie(
            LANG_COOKIE, code, max_age=365 * 86400, path="/admin", samesite="strict"
        )
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    files = {"admin.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
    if name not in files:
        return Response(status_code=404)
    data = resources.files("node.web").joinpath("static", name).read_bytes()
    return Response(data, media_type=files[name], headers={"Cache-Control": "max-age=3600"})


# --- overview --------------------------------------------------------------------------------


def _budget(ctx: Ctx) -> dict[str, Any]:
    state = ctx.state
    period = state.answerer.budget_period()
    with state.reader() as session:
        status = ledger.status(session, period, state.settings.budget_rho)
        history = [(p, s) for p, s in budget_history(session) if p != period]
    fraction = min(1.0, status.spent_rho / status.cap_rho) if status.cap_rho else 1.0
    return {"status": status, "fraction": fraction, "history": history}


@router.get("/")
def overview(request: Request) -> Response:
    ctx = _ctx(request)
    state = ctx.state
    link = load_link(state.settings.home)
    connector = state.connector
    with state.reader() as session:
        status = data_status(session, state.settings.retention_days, import_limit=1)
        events = audit.count(session)
        head = audit.head(session)
    return _render(
        ctx,
        "overview.html",
        budget=_budget(ctx),
        link=link,
        connector=connector.status if connector else None,
        data=status,
        events=events,
        head=head,
        settings=state.settings,
    )


# --- data and import ------------------------------------------------------------------------


@router.get("/data")
def data(request: Request) -> Response:
    ctx = _ctx(request)
    with ctx.state.reader() as session:
        status = data_status(session, ctx.state.settings.retention_days)
    cutoff = None
    if ctx.state.settings.retention_days is not None:
        from node.services.retention import cutoff_for

        cutoff = cutoff_for(ctx.state.settings.retention_days)
    return _render(ctx, "data.html", data=status, settings=ctx.state.settings, cutoff=cutoff)


@dataclass
class ImportJob:
    job_id: str
    file_name: str
    done_rows: int = 0
    total_rows: int | None = None
    finished: bool = False
    report: Any = None
    refused: bool = False
    too_many: bool = False  # refused although skip_invalid: more than the allowed share rejected
    allowed_share: str = ""
    error: str | None = None


_jobs: dict[str, ImportJob] = {}
_jobs_lock = threading.Lock()


@router.get("/import")
def import_page(request: Request) -> Response:
    ctx = _ctx(request)
    from node.ingest.profile import list_builtin_profiles

    error = request.query_params.get("error")
    if error in ("no_file", "too_big"):
        ctx.flash.append(("error", ctx.t(error)))
    return _render(ctx, "import.html", profiles=list_builtin_profiles())


@router.post("/import")
async def import_upload(request: Request) -> Response:
    ctx = await _actx(request)
    limit = ctx.state.settings.admin_max_upload_bytes
    async with request.form() as form:  # closes the spooled upload afterwards
        if not csrf_ok(ctx.session.csrf, _text(form.get("csrf"))):
            raise _Redirect("/admin/import?csrf=1")
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise _Redirect("/admin/import?error=no_file")
        profile_name = _text(form.get("profile")) or "generic"
        source = (_text(form.get("source")) or "").strip() or None
        skip_invalid = form.get("skip_invalid") == "on"
        job, target = await _save_upload(ctx, upload, limit)
    with _jobs_lock:
        _jobs[job.job_id] = job
    thread = threading.Thread(
        target=_run_import,
        args=(ctx.state, job, target, profile_name, source, skip_invalid),
        name=f"import-{job.job_id[:8]}",
        daemon=True,
    )
    thread.start()
    raise _Redirect(f"/admin/import/{job.job_id}")


async def _save_upload(ctx: Ctx, upload: UploadFile, limit: int) -> tuple[ImportJob, Path]:
    """Copy the upload to a private directory under the node's home (removed after import)."""
    uploads = ctx.state.settings.home / "uploads"
    uploads.mkdir(mode=0o700, exist_ok=True)
    name = upload.filename or "upload.csv"
    suffix = ".xlsx" if name.lower().endswith(".xlsx") else ".csv"
    safe = "".join(c for c in Path(name).name if c.isalnum() or c in "._-")[:80]
    job = ImportJob(job_id=uuid.uuid4().hex, file_name=safe or f"upload{suffix}")
    target = Path(tempfile.mkdtemp(dir=uploads)) / job.file_name
    if not target.name.lower().endswith(suffix):
        target = target.with_name(target.name + suffix)
    size = 0
    with target.open("wb") as out:
        while chunk := await upload.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                break
            out.write(chunk)
    if size > limit:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise _Redirect("/admin/import?error=too_big")
    return job, target


def _run_import(
    state: NodeState,
    job: ImportJob,
    path: Path,
    profile_name: str,
    source: str | None,
    skip_invalid: bool,
) -> None:
    from node.ingest.errors import ImportRefused, percent
    from node.ingest.importer import ReadLimits, import_file
    from node.ingest.profile import load_profile
    from node.ingest.sector import sector_pseudonymiser

    def progress(done: int, total: int | None) -> None:
        job.done_rows, job.total_rows = done, total

    try:
        profile = load_profile(profile_name)
        # Enrolled with key holders: sector pseudonyms too, or nothing (node/ingest/sector.py).
        with sector_pseudonymiser(state.settings, profile.sector_kind) or nullcontext() as sector:
            report = import_file(
                state.writer,
                load_secret(state.settings.secret_path),
                path,
                profile,
                source=source,
                skip_invalid=skip_invalid,
                rejects_path=path.with_name("rejects.csv"),
                progress=progress,
                limits=ReadLimits(
                    xlsx_max_unpacked_bytes=state.settings.import_xlsx_max_unpacked_bytes,
                    xlsx_max_ratio=state.settings.import_xlsx_max_ratio,
                    xlsx_max_rows=state.settings.import_xlsx_max_rows,
                ),
                sector=sector,
            )
        job.report = report
    except ImportRefused as exc:
        job.report = exc.report
        job.refused = True
        if exc.allowed_share is not None:
            job.too_many, job.allowed_share = True, percent(exc.allowed_share)
    except (ValueError, OSError) as exc:  # a bad file or profile: the message says what
        job.error = str(exc).splitlines()[0][:800] if str(exc) else type(exc).__name__
    except Exception as exc:  # the import's transaction rolled back: nothing is half-written
        log.error("upload import failed: %s", type(exc).__name__)
        job.error = f"{type(exc).__name__}; nothing was imported (see the node's log)"
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)  # raw data does not linger on disk
        job.finished = True


def _job(job_id: str) -> ImportJob | None:
    with _jobs_lock:
        return _jobs.get(job_id)


@router.get("/import/{job_id}")
def import_status(request: Request, job_id: str) -> Response:
    ctx = _ctx(request)
    job = _job(job_id)
    if job is None:
        raise _Redirect("/admin/import")
    return _render(ctx, "import_status.html", job=job)


@router.get("/import/{job_id}/rejects.csv")
def import_rejects(request: Request, job_id: str) -> Response:
    _ctx(request)
    job = _job(job_id)
    if job is None or job.report is None:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    lines = ["file;line;column;reason"]
    for reject in job.report.rejects:
        fields = [reject.file, str(reject.line), reject.column, reject.reason]
        lines.append(";".join('"' + f.replace('"', '""') + '"' for f in fields))
    return Response(
        "\n".join(lines) + "\n",
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{job.file_name}.rejects.csv"',
        },
    )


# --- approvals --------------------------------------------------------------------------------


def _labels(state: NodeState) -> dict[str, str]:
    """Key id → a readable name (the aggregator's address), for "via"."""
    return {key.key_id: key.label for key in trusted_keys(state.reader)}


@router.get("/approvals")
def approvals_page(request: Request) -> Response:
    ctx = _ctx(request)
    done = request.query_params.get("done")
    if done in ("approved", "declined"):
        ctx.flash.append(("ok", ctx.t(f"decided_{done}")))
    elif done in ("late", "too_late"):
        ctx.flash.append(("error", ctx.t(f"decision_{done}")))
    settings = ctx.state.settings
    queue = [
        {
            "item": w,
            "text": i18n.describe(
                _summary(w.request.spec),
                ctx.lang,
                rho=w.request.spec.privacy.rho_charged,
                cap_rho=settings.budget_rho,
                period_kind=settings.budget_period,
            ),
        }
        for w in ctx.state.approvals.waiting()
    ]
    recent = [
        {"item": w, "text": i18n.describe(_summary(w.request.spec), ctx.lang)}
        for w in ctx.state.approvals.recent()
    ]
    return _render(
        ctx,
        "approvals.html",
        queue=queue,
        recent=recent,
        labels=_labels(ctx.state),
        settings=settings,
    )


def _summary(spec: Any) -> dict[str, Any]:
    return ledger.query_summary(spec)


@router.post("/approvals/{query_id}/{decision}")
async def decide(request: Request, query_id: str, decision: str) -> Response:
    ctx = await _actx(request)
    await _form(request, ctx)
    if decision not in ("approve", "decline"):
        raise _Redirect("/admin/approvals")
    try:
        status = await to_thread.run_sync(
            ctx.state.approvals.decide, query_id, decision == "approve"
        )
    except DecisionError as exc:
        # Past its deadline the round went on without this node (or closed): say so, rather
        # than "approved" for a question that will never be answered.
        late = "too_late" if str(exc) == approvals.EXPIRED else "late"
        raise _Redirect(f"/admin/approvals?done={late}") from None
    raise _Redirect(f"/admin/approvals?done={status}")


# --- audit ------------------------------------------------------------------------------------


def _answer_values(
    entry: LedgerEntry | None, logged_sha: str | None, lang: str
) -> dict[str, Any] | None:
    if entry is None:
        return None
    body = bytes(entry.answer)
    payload = json.loads(body).get("payload", {})
    shown: dict[str, Any] = {
        "query_id": entry.query_id,
        "mismatch": logged_sha is not None and logged_sha != entry.answer_sha256,
        "secure": entry.mode == "secure",
        "threshold": entry.threshold,
    }
    if entry.mode == "secure":
        return shown
    cells = payload.get("cells", [])
    group_by = payload.get("group_by", [])
    measures = payload.get("measures", [])
    shown["group_by"] = [
        (DIMENSIONS[g].nl if lang == "nl" else DIMENSIONS[g].en) if g in DIMENSIONS else g
        for g in group_by
    ]
    names = [str(m.get("measure")) for m in measures]
    shown["measures"] = [
        i18n.MEASURES.get(n, (n, n))[0 if lang == "nl" else 1] + (" (€)" if n == "revenue" else "")
        for n in names
    ]
    rows = []
    for i, cell in enumerate(cells[:VALUES_SHOWN]):
        labels = [
            DIMENSIONS[g].label(c, lang) if g in DIMENSIONS else c
            for g, c in zip(group_by, cell, strict=False)
        ]
        values = [
            i18n.number(m["values"][i] / 100, lang, 2)
            if name == "revenue"
            else i18n.number(m["values"][i], lang)
            for m, name in zip(measures, names, strict=True)
        ]
        rows.append((cell, labels, values))
    shown["rows"] = rows
    shown["more"] = max(0, len(cells) - VALUES_SHOWN)
    return shown


@router.get("/audit/answers/{query_id}.json")
def audit_answer(request: Request, query_id: str) -> Response:
    """The signed answer exactly as it left the node (the ledger's bytes)."""
    _ctx(request)
    with _state(request).reader() as session:
        entry = ledger.stored_answer(session, query_id)
        if entry is None:
            return Response(status_code=404, headers=SECURITY_HEADERS)
        body = bytes(entry.answer)
    safe = "".join(c for c in query_id if c.isalnum() or c in "-_")
    return Response(
        body,
        media_type="application/json",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="answer-{safe}.json"',
        },
    )


@router.get("/audit")
def audit_page(request: Request) -> Response:
    ctx = _ctx(request)
    kind = request.query_params.get("kind") or None
    if kind not in audit.KINDS:
        kind = None
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    settings = ctx.state.settings
    with ctx.state.reader() as session:
        entries = audit.entries(session, kind=kind, limit=50, before=before)
        check = audit.verify(session)
        ledger_rows = {}
        ids = [
            e.data["query_id"] for e in entries if e.kind == audit.ANSWER and e.data.get("query_id")
        ]
        if ids:
            from sqlalchemy import select

            for row in session.scalars(select(LedgerEntry).where(LedgerEntry.query_id.in_(ids))):
                ledger_rows[row.query_id] = row
        events = []
        for entry in entries:
            data = entry.data
            values = None
            if entry.kind == audit.ANSWER:
                values = _answer_values(
                    ledger_rows.get(str(data.get("query_id"))), data.get("answer_sha256"), ctx.lang
                )
            events.append(
                {
                    "entry": entry,
                    "text": _event_text(ctx, entry),
                    "released": values,
                }
            )
    labels = _labels(ctx.state)
    return _render(
        ctx,
        "audit.html",
        events=events,
        check=check,
        kinds=audit.KINDS,
        kind=kind,
        labels=labels,
        older=entries[-1].seq if len(entries) == 50 else None,
        settings=settings,
    )


def _event_text(ctx: Ctx, entry: audit.Entry) -> str:
    data = entry.data
    lang = ctx.lang
    nl = lang == "nl"
    if data.get("query"):
        text = i18n.describe(
            data["query"],
            lang,
            rho=data.get("rho") if entry.kind == audit.ANSWER else None,
            cap_rho=data.get("cap_rho"),
            period_kind=ctx.state.settings.budget_period,
        )
        if entry.kind == audit.REFUSAL:
            text += f" — {data.get('reason')}: {data.get('message')}"
        return text
    if entry.kind == audit.POLICY_CHANGE:
        changes = data.get("changes", {})
        return i18n.policy_change(lang, changes)
    if entry.kind == audit.IMPORT:
        return i18n.t(
            lang,
            "import_done",
            file=data.get("file"),
            read=data.get("rows_read"),
            new=data.get("inserted"),
            updated=data.get("updated"),
            unchanged=data.get("unchanged"),
            rejected=data.get("rejected"),
        )
    if entry.kind in (audit.GDPR_ACCESS, audit.GDPR_ERASURE):
        found = data.get("found")
        if nl:
            return (
                f"{'gevonden' if found else 'niet gevonden'}, {data.get('admissions')} bezoek(en)"
            )
        return f"{'found' if found else 'not found'}, {data.get('admissions')} admission(s)"
    if entry.kind == audit.RETENTION:
        if nl:
            return (
                f"{data.get('admissions')} bezoek(en) van vóór {data.get('cutoff')} en "
                f"{data.get('persons')} persoon/personen verwijderd"
            )
        return (
            f"{data.get('admissions')} admission(s) from before {data.get('cutoff')} and "
            f"{data.get('persons')} person(s) deleted"
        )
    if entry.kind == audit.KEY_ROTATION:
        return f"{data.get('old_key_id')} → {data.get('new_key_id')} ({data.get('fingerprint')})"
    if entry.kind == audit.TRUST_REVOKED:
        return f"{data.get('key_id')} ({data.get('label')})"
    if entry.kind == audit.REJECTED_TASK:
        return str(data.get("reason", ""))
    if entry.kind == audit.LOCKED_OUT:
        return str(data.get("until", ""))
    return ""


@router.get("/audit.csv")
def audit_csv(request: Request) -> Response:
    ctx = _ctx(request)
    lang = ctx.lang
    session = ctx.state.reader()

    def describe(data: dict[str, Any]) -> str:
        return i18n.describe(data.get("query"), lang)

    def rows() -> Any:
        try:
            yield from audit.export_csv(session, describe)
        finally:
            session.close()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
        },
    )


# --- policy -----------------------------------------------------------------------------------


@router.get("/policy")
def policy_page(request: Request) -> Response:
    ctx = _ctx(request)
    saved = request.query_params.get("saved")
    if saved == "":
        ctx.flash.append(("info", ctx.t("nothing_changed")))
    elif saved:
        names = ", ".join(i18n.policy_field(ctx.lang, name) for name in saved.split(","))
        ctx.flash.append(("ok", ctx.t("saved", names=names)))
    revoked = request.query_params.get("revoked")
    if revoked:
        ctx.flash.append(("ok", ctx.t("revoked", key_id=revoked)))
    return _policy(ctx, policy_store.current(ctx.state.settings), {})


def _policy(
    ctx: Ctx, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Response:
    link = load_link(ctx.state.settings.home)
    link_fp = fingerprint(public_key_from_text(link.aggregator_key)) if link else None
    with ctx.state.reader() as session:
        changes = audit.entries(session, kind=audit.POLICY_CHANGE, limit=10)
    return _render(
        ctx,
        "policy.html",
        status=status,
        values=values,
        errors=errors,
        dimensions=DIMENSIONS,
        keys=trusted_keys(ctx.state.reader),
        link=link,
        link_fingerprint=link_fp,
        changes=changes,
    )


def _parse_policy(form: dict[str, Any]) -> dict[str, Any]:
    def number(name: str, kind: Callable[[str], Any]) -> Any:
        text = (_text(form.get(name)) or "").strip().replace(",", ".")
        if text == "":
            return None
        try:
            value = kind(text)
        except ValueError:
            return text  # let validation say what is wrong
        if isinstance(value, float) and not math.isfinite(value):
            return text
        return value

    values: dict[str, Any] = {
        "max_cells": number("max_cells", int),
        "max_rho_per_query": number("max_rho_per_query", float),
        "budget_rho": number("budget_rho", float),
        "analyst_budget_rho": number("analyst_budget_rho", float),
        "secure_max_worst_rho": number("secure_max_worst_rho", float),
        "secure_answers": form.get("secure_answers") == "on",
        "approval": _text(form.get("approval")) or "auto",
    }
    if form.get("all_dimensions") == "on":
        values["allowed_dimensions"] = None
    else:
        values["allowed_dimensions"] = [d for d in DIMENSIONS if form.get(f"dim_{d}") == "on"]
    return values


@router.post("/policy")
async def policy_save(request: Request) -> Response:
    ctx = await _actx(request)
    form = await _form(request, ctx)
    return await to_thread.run_sync(_save_policy, ctx, _parse_policy(form))


def _save_policy(ctx: Ctx, values: dict[str, Any]) -> Response:
    try:
        changed = policy_store.change(ctx.state.writer, ctx.state.settings, values)
    except policy_store.PolicyError as exc:
        ctx.flash.append(("error", ctx.t("not_valid")))
        shown = {**policy_store.current(ctx.state.settings), **values}
        return _policy(ctx, shown, exc.errors, status=422)
    raise _Redirect("/admin/policy?saved=" + ",".join(changed))


@router.post("/policy/revoke/{key_id}")
async def revoke(request: Request, key_id: str) -> Response:
    ctx = await _actx(request)
    await _form(request, ctx)
    await to_thread.run_sync(_revoke, ctx, key_id)
    raise _Redirect("/admin/policy")


def _revoke(ctx: Ctx, key_id: str) -> None:
    labels = _labels(ctx.state)
    if key_id in labels and untrust_key(ctx.state.writer, key_id):
        with transaction(ctx.state.writer) as session:
            audit.append(session, audit.TRUST_REVOKED, key_id=key_id, label=labels[key_id])
        raise _Redirect(f"/admin/policy?revoked={key_id}")


# --- GDPR -------------------------------------------------------------------------------------


def _gdpr(ctx: Ctx, status: int = 200, **values: Any) -> Response:
    with ctx.state.reader() as session:
        from sqlalchemy import select

        past = session.scalars(select(GdprRequest).order_by(GdprRequest.id.desc()).limit(20)).all()
    return _render(ctx, "gdpr.html", status=status, past=past, **values)


@router.get("/privacy-requests")
def gdpr_page(request: Request) -> Response:
    return _gdpr(_ctx(request))


@router.post("/privacy-requests/{action}")
async def gdpr_action(request: Request, action: str) -> Response:
    ctx = await _actx(request)
    form = await _form(request, ctx)
    identifier = (_text(form.get("identifier")) or "").strip()
    if action not in ("access", "prepare", "erase") or not identifier:
        raise _Redirect("/admin/privacy-requests")
    return await to_thread.run_sync(_gdpr_action, ctx, action, identifier, form.get("checked"))


def _gdpr_action(ctx: Ctx, action: str, identifier: str, checked: Any) -> Response:
    if checked != "on":
        ctx.flash.append(("error", ctx.t("need_check")))
        return _gdpr(ctx, status=422)
    secret = load_secret(ctx.state.settings.secret_path)
    if action == "access":
        found = export_person(ctx.state.writer, secret, identifier)
        if found is None:
            ctx.flash.append(("info", ctx.t("not_found")))
        return _gdpr(ctx, person=found)
    if action == "prepare":
        admissions = count_person(ctx.state.reader, secret, identifier)
        if admissions is None:
            ctx.flash.append(("info", ctx.t("not_found")))
            return _gdpr(ctx)
        return _gdpr(ctx, confirm={"identifier": identifier, "admissions": admissions})
    erased = forget_person(ctx.state.writer, secret, identifier)
    if erased is None:
        ctx.flash.append(("info", ctx.t("not_found")))
    else:
        ctx.flash.append(("ok", ctx.t("erased", n=erased)))
    return _gdpr(ctx)


# --- benchmark --------------------------------------------------------------------------------


@router.get("/benchmark")
def benchmark_page(request: Request) -> Response:
    ctx = _ctx(request)
    link = load_link(ctx.state.settings.home)
    release = None
    tables: list[Any] = []
    problem = None
    if link is None:
        problem = ctx.t("not_joined")
    else:
        try:
            release = ctx.state.releases.latest(link)
        except BenchmarkUnavailable as exc:
            problem = ctx.t("no_release", why=str(exc))
        else:
            with ctx.state.reader() as session:
                tables = compare(session, release)
    return _render(
        ctx, "benchmark.html", release=release, tables=tables, problem=problem, link=link
    )
