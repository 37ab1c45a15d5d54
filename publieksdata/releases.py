"""`publieksdata aggregator publish` and `publieksdata verify-release`.

``publish`` reads a recipe (a TOML file or a built-in name such as ``standard-2025``) and first
has the aggregator plan it (POST /v1/releases/plan): the token's role and every node's last
signed budget and policy, for the whole recipe at once, so that a publish that would be refused
asks no round at all. It reuses completed rounds of the same questions (given with ``--round``
or found by the aggregator), asks the federation the other reports, then has the aggregator
compose, sign and publish the release. ``--dry-run`` prints the plan and asks nothing.
``verify-release`` checks a published release's signature and the whole chain back to the first
release, from the public site or from files.

Exit codes: 0 success; 1 error (nothing was published, or a dry run found it would be refused;
or verification found a problem); 2 usage error (a bad recipe, no URL or token).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from aggregator.accuracy import summed_over
from aggregator.client import TOKEN_ENV, URL_ENV, Client, ClientError, NotConfigured
from aggregator.releases import recipe as recipes
from aggregator.releases.chain import ChainReport, ReleaseFormatError, parse, verify_chain
from aggregator.releases.document import RELEASE_KEYS
from aggregator.releases.plan import rho
from node.cli import fail
from protocol.api import ReleaseChain, ReleasePlan
from protocol.preview import RoundPreview
from protocol.query import Measure
from protocol.signing import (
    Envelope,
    SignatureError,
    fingerprint,
    key_id_of,
    public_key_from_text,
    verify_once,
)
from publieksdata.ask import open_client

EXIT_USAGE = 2
console = Console()
err = Console(stderr=True, soft_wrap=True)  # messages name paths: never hard-wrap them


def _rounds(values: list[str] | None) -> dict[str, str]:
    asked: dict[str, str] = {}
    for value in values or ():
        report, sep, round_id = value.partition("=")
        if not sep or not report.strip() or not round_id.strip():
            raise typer.BadParameter(
                f"expected REPORT=ROUND_ID, got {value!r}", param_hint="--round"
            )
        asked[report.strip()] = round_id.strip()
    return asked


def _updater(progress: Progress, task: TaskID) -> Callable[[int, int], None]:
    return lambda done, total: progress.update(task, completed=done, total=total)


def _accuracy_lines(client: Client, loaded: recipes.Recipe, plan: ReleasePlan) -> list[str]:
    """Per table of a report still to ask: the expected 95% half-width of each of its cells and
    the smallest figure the release page shows (below it: "."), from the aggregator's preview
    of the report's round (asks nothing). Reused rounds have their figures already."""
    new = {r.report for r in plan.reports if r.round_id is None}
    if not new:
        return []
    limit = loaded.post_processing.suppress_relative_halfwidth
    lines = ["Expected accuracy of each table cell (95% half-width, ±), if every node that "
             "would answer does"]  # fmt: skip
    previews: dict[str, RoundPreview] = {}
    for table in loaded.tables:
        if table.report not in new:
            continue
        if table.report not in previews:
            try:
                previews[table.report] = client.preview(
                    report=table.report, year=loaded.year, rho=loaded.rho, mode=loaded.mode.value
                )
            except ClientError as exc:
                lines.append(f"  report {table.report}: no preview ({exc})")
                continue
        preview = previews[table.report]
        if not preview.measures:
            lines.append(f"  {table.table_id}: no round could be run ({preview.problem})")
            continue
        cell = summed_over(preview.measure(table.measure), preview.spec, table.by, limit)
        per = 100 if table.measure is Measure.REVENUE else 1  # cents, shown in euros
        unit = " euro" if per == 100 else ""
        shown = (
            "every figure is shown"
            if cell.shown_from is None
            else f"a figure below {cell.shown_from / per:,.0f}{unit} is shown as '.'"
        )
        lines.append(
            f"  {table.table_id} ({table.measure.value}): ± {cell.half_width / per:,.0f}{unit} "
            f"per cell; {shown}"
        )
    return lines


def _plan_lines(plan: ReleasePlan) -> list[str]:
    """Per report what it costs, per node what the recipe costs and whether it would answer."""
    lines = [f"Release {plan.release_id}: {len(plan.reports)} report(s) to ask"]
    for report in plan.reports:
        if report.round_id is None:
            lines.append(f"  report {report.report}: a new round, ρ {rho(report.rho)} per node")
        else:
            how = (
                "found: asked before for the same question"
                if report.found
                else "given with --round, or asked by this run"
            )
            lines.append(
                f"  report {report.report}: reuses round {report.round_id} ({how}; no cost)"
            )
    lines.append("Per node: ρ this recipe would cost, against its last signed budget")
    for node in plan.nodes:
        budget = (
            "budget not reported yet"
            if node.cap_rho is None
            else f"spent ρ {rho(node.spent_rho or 0.0)} of cap ρ {rho(node.cap_rho)} "
            f"for {node.period}, ρ {rho(node.pending_rho)} held by open rounds, "
            f"ρ {rho(node.remaining_rho or 0.0)} left"
        )
        verdict = f"would refuse ({'; '.join(node.refusals)})" if node.refusals else "would answer"
        lines.append(
            f"  {node.institution} (node {node.node_id}): costs ρ {rho(node.cost_rho)}; "
            f"{budget}; {verdict}"
        )
    may = "may publish" if plan.may_publish else "may not publish (publishing needs admin)"
    lines.append(f"Token role: {plan.role}, {may}")
    return lines


def _say(target: Console, lines: list[str]) -> None:
    for line in lines:
        target.print(line, markup=False, highlight=False, soft_wrap=True)


def _done(asked: Mapping[str, str]) -> str:
    if not asked:
        return "no round was completed"
    rounds = ", ".join(f"{name}={round_id}" for name, round_id in asked.items())
    return (
        f"completed rounds: {rounds}; run the same command again and it reuses them (no budget "
        "is spent on them twice)"
    )


def publish(
    recipe: Annotated[
        str,
        typer.Argument(
            metavar="RECIPE",
            help=f"A recipe file (TOML) or a built-in recipe: {recipes.builtin_names()}.",
        ),
    ],
    round_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--round",
            metavar="REPORT=ROUND_ID",
            help="Use this completed round for a report instead of asking it again (repeat). "
            "Without it, a completed round of the same question from this budget period is "
            "reused by itself.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what publishing would ask and cost each node, and whether the token's "
            "role or a node's budget or policy would refuse it; ask and publish nothing.",
        ),
    ] = False,
    correction_nl: Annotated[
        str | None, typer.Option(help="A new version of a release: what changed (Dutch).")
    ] = None,
    correction_en: Annotated[
        str | None, typer.Option(help="A new version of a release: what changed (English).")
    ] = None,
    url: Annotated[str | None, typer.Option(envvar=URL_ENV, help="The aggregator's URL.")] = None,
    token: Annotated[str | None, typer.Option(envvar=TOKEN_ENV, help="Admin API token.")] = None,
) -> None:
    """Publish a release: check the whole recipe against the token's role and every node's
    budget, ask the reports it needs, then compose, sign and publish it."""
    try:
        loaded = recipes.load(recipe)
    except recipes.RecipeError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if (correction_nl is None) != (correction_en is None):
        raise typer.BadParameter(
            "give the correction in Dutch and in English", param_hint="--correction-nl"
        )
    correction = None if correction_nl is None else {"nl": correction_nl, "en": correction_en or ""}
    asked = _rounds(round_ids)
    unknown = sorted(set(asked) - set(loaded.reports_to_ask()))
    if unknown:
        raise typer.BadParameter(
            f"the recipe does not use report {unknown[0]!r}", param_hint="--round"
        )
    try:
        client = open_client(url, token)
    except NotConfigured as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    document = loaded.model_dump(mode="json")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with client:
        try:
            plan = client.plan(document, asked)
        except ClientError as exc:
            raise fail(f"cannot check the recipe: {exc}; no round was asked") from None
        if dry_run:
            _say(console, _plan_lines(plan))
            _say(console, _accuracy_lines(client, loaded, plan))
            if plan.ok:
                console.print("Nothing was asked: publishing would go ahead.")
                return
            for problem in plan.problems:
                err.print(f"  • {escape(problem)}")
            raise fail(f"publishing {plan.release_id} would be refused; nothing was asked")
        if not plan.ok:
            _say(err, _plan_lines(plan))
            for problem in plan.problems:
                err.print(f"  • {escape(problem)}")
            raise fail(
                f"publishing {plan.release_id} would be refused ({len(plan.problems)} "
                "problem(s) above); no round was asked and no budget was spent"
            )
        for planned in plan.reports:
            if planned.round_id is not None and planned.report not in asked:
                asked[planned.report] = planned.round_id
                err.print(
                    f"[green]✓[/] report {planned.report}: round {planned.round_id} "
                    "(reused: asked before for the same question; no budget spent)"
                )
        to_ask = [name for name in loaded.reports_to_ask() if name not in asked]
        for name in to_ask:
            with Progress(*columns, console=err) as progress:
                task = progress.add_task(f"Report {name}: nodes done", total=None)
                try:
                    result = client.ask(
                        report=name,
                        year=loaded.year,
                        rho=loaded.rho,
                        mode=loaded.mode.value,
                        deadline_seconds=loaded.deadline_seconds,
                        approval_deadline_seconds=loaded.approval_deadline_seconds,
                        progress=_updater(progress, task),
                    )
                except ClientError as exc:
                    raise _midway(client, document, asked, f"report {name}: {exc}") from None
            if not result.has_estimates:
                why = result.raw.failure or "the quorum was not met"
                raise _midway(
                    client,
                    document,
                    asked,
                    f"report {name} (round {result.round_id}) has no sector result ({why})",
                )
            asked[name] = result.round_id
            err.print(f"[green]✓[/] report {name}: round {result.round_id}")
        try:
            published = client.publish(document, asked, correction)
        except ClientError as exc:
            problems = exc.problem.get("problems") or ()
            for problem in problems[1:]:  # the first is in the message
                err.print(f"  • {problem}")
            raise fail(f"{exc}; {_done(asked)}") from None
        base = client.url
    console.print(
        f"[green]✓[/] Published {published.slug}: version {published.version}, "
        f"{published.tables} tables, number {published.sequence} in the release chain."
    )
    if published.corrects:
        console.print(f"  It corrects the release with hash {published.corrects[:16]}….")
    console.print(f"  {base}{published.path}")
    console.print(f"  hash {published.hash}")


def _midway(
    client: Client, document: Mapping[str, object], asked: Mapping[str, str], what: str
) -> typer.Exit:
    """A round failed after others completed: name them, and each node's budget as it is now."""
    try:
        lines = _plan_lines(client.plan(document, asked))
    except ClientError:
        lines = []
    _say(err, lines)
    return fail(f"{what}; nothing was published; {_done(asked)}")


# --- verify-release -------------------------------------------------------------------------


def _site_root(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _target_slug(url_or_file: str) -> str | None:
    """The release a URL or file name points at (``sector-2025-v1``), if it names one."""
    name = urlsplit(url_or_file).path.rstrip("/").rsplit("/", 1)[-1]
    name = name.removesuffix(".json")
    return name if "-v" in name else None


def _from_site(url: str) -> tuple[list[bytes], ReleaseChain, str | None]:
    root = _site_root(url)
    with httpx.Client(base_url=root, timeout=30, follow_redirects=True) as http:
        response = http.get("/v1/releases")
        response.raise_for_status()
        index = ReleaseChain.model_validate_json(response.content)
        target = _target_slug(url)
        releases = []
        for entry in index.releases:
            got = http.get(entry.json_path)
            got.raise_for_status()
            releases.append(got.content)
            if entry.slug == target:
                break
    return releases, index, target


def _from_files(path: Path) -> tuple[list[bytes], str | None]:
    """A directory of sealed releases, or one file and its predecessors beside it."""
    folder = path if path.is_dir() else path.parent
    found: dict[int, bytes] = {}
    for candidate in sorted(folder.glob("*.json")):
        data = candidate.read_bytes()
        try:
            _, document = parse(data)
        except ReleaseFormatError:
            if candidate == path:
                raise
            continue
        found.setdefault(document.sequence, data)
    target = None
    if path.is_file():
        _, document = parse(path.read_bytes())
        target = document.slug
        found[document.sequence] = path.read_bytes()
        found = {s: d for s, d in found.items() if s <= document.sequence}
    return [found[s] for s in sorted(found)], target


def _print_report(report: ChainReport, releases: list[bytes], target: str | None) -> None:
    if report.ok:
        last = parse(releases[-1])[1]
        console.print(
            f"[green]✓[/] {last.slug}: the signature is valid and the chain is intact back to "
            f"the first release ({report.checked} release(s) checked)."
        )
        return
    err.print(f"[bold red]✗[/] {len(report.problems)} problem(s) found:")
    for problem in report.problems:
        err.print(f"  • {problem}")


def _keyring(index: ReleaseChain, trusted: Ed25519PublicKey) -> dict[str, Ed25519PublicKey]:
    """The aggregator's keys, current and retired, as its trusted current key vouches for them."""
    try:
        envelope = Envelope.model_validate(index.keys)
        payload = verify_once(envelope, RELEASE_KEYS, trusted)
        keys = {}
        for entry in payload["keys"]:
            public = public_key_from_text(entry["public_key"])
            if key_id_of(public) != entry["key_id"]:
                raise ValueError("a key does not match its key id")
            keys[entry["key_id"]] = public
    except (SignatureError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"the site's list of aggregator keys is not valid: {exc}") from None
    keys[key_id_of(trusted)] = trusted
    return keys


def verify_release(
    source: Annotated[
        str,
        typer.Argument(
            metavar="URL|FILE",
            help="A release page or .json URL on the public site, a sealed release file, or a "
            "directory of sealed release files.",
        ),
    ],
    key: Annotated[
        list[str] | None,
        typer.Option(
            help="The aggregator's public key (base64url); repeat it for keys it used before a "
            "key rotation. Default: the key the site serves; compare its fingerprint with one "
            "published elsewhere.",
        ),
    ] = None,
) -> None:
    """Check a release's signature and the whole chain back to the first release."""
    try:
        pinned = [public_key_from_text(k) for k in key or ()]
    except ValueError as exc:
        raise fail(f"--key: {exc}", EXIT_USAGE) from None
    keyring: dict[str, Ed25519PublicKey] = {key_id_of(k): k for k in pinned}
    target: str | None
    if source.startswith(("http://", "https://")):
        try:
            releases, index, target = _from_site(source)
        except (httpx.HTTPError, ValueError) as exc:
            raise fail(f"cannot read the releases from {_site_root(source)}: {exc}") from None
        if pinned:
            trusted = next((k for k in pinned if key_id_of(k) == index.key_id), pinned[0])
        else:
            trusted = public_key_from_text(index.public_key)
            console.print(f"Key of {index.aggregator}: fingerprint {index.fingerprint}")
        keyring |= _keyring(index, trusted)
        if target is not None and not any(parse(r)[1].slug == target for r in releases):
            raise fail(f"the site lists no release {target!r}")
    else:
        path = Path(source)
        if not path.exists():
            raise fail(f"there is no file or directory {source}", EXIT_USAGE)
        if not pinned:
            raise fail("give the aggregator's public key with --key to check files", EXIT_USAGE)
        try:
            releases, target = _from_files(path)
        except (OSError, ReleaseFormatError) as exc:
            raise fail(f"{source}: {exc}") from None
    for public in pinned:
        console.print(f"Checking against the key with fingerprint {fingerprint(public)}")
    report = verify_chain(releases, keyring)
    _print_report(report, releases, target)
    if not report.ok:
        raise typer.Exit(1)
