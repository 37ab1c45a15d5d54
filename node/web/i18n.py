"""The admin pages' words in Dutch and English, and queries described in plain language."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from protocol.catalogue import DIMENSIONS
from protocol.figures import institution_label, sector_label

LANGS = ("nl", "en")

WORDS: dict[str, tuple[str, str]] = {
    "app": ("publieksdata · beheer", "publieksdata · admin"),
    "skip": ("Naar de inhoud", "Skip to content"),
    "other_lang": ("English", "Nederlands"),
    "nav": ("Beheer", "Admin"),
    "overview": ("Overzicht", "Overview"),
    "data": ("Gegevens", "Data"),
    "import": ("Importeren", "Import"),
    "approvals": ("Goedkeuren", "Approvals"),
    "audit": ("Logboek", "Audit log"),
    "policy": ("Beleid", "Policy"),
    "privacy_requests": ("AVG-verzoeken", "GDPR requests"),
    "benchmark": ("Wij en de sector", "Us and the sector"),
    "logout": ("Afmelden", "Log out"),
    "login": ("Aanmelden", "Log in"),
    "password": ("Wachtwoord", "Password"),
    "login_intro": (
        "Meld je aan met het beheerderswachtwoord van deze node (ingesteld bij "
        "'publieksdata node init').",
        "Log in with this node's admin password (set at 'publieksdata node init').",
    ),
    "login_failed": ("Dat wachtwoord klopt niet.", "That password is not right."),
    "locked": (
        "Te veel mislukte pogingen. Aanmelden kan weer om {until}.",
        "Too many failed attempts. You can log in again at {until}.",
    ),
    "expired": (
        "Je sessie is verlopen. Meld je opnieuw aan.",
        "Your session has expired. Please log in again.",
    ),
    "no_password": (
        "Er is nog geen beheerderswachtwoord. Stel het in met 'publieksdata node admin-password'.",
        "There is no admin password yet. Set one with 'publieksdata node admin-password'.",
    ),
    "csrf_failed": (
        "Dit formulier was verlopen of kwam niet van deze pagina. Probeer het opnieuw.",
        "This form had expired or did not come from this page. Please try again.",
    ),
    "remote_refused": (
        "De beheerpagina's zijn alleen bereikbaar vanaf deze computer zelf.",
        "The admin pages can only be reached from this computer itself.",
    ),
    # overview
    "budget": ("Privacybudget", "Privacy budget"),
    "budget_period": ("Periode {period}", "Period {period}"),
    "budget_used": (
        "{spent} van {cap} gebruikt ({pct})",
        "{spent} of {cap} used ({pct})",
    ),
    "budget_explain": (
        "Elk antwoord kost een deel van het budget (ρ, zCDP). Is het op, dan beantwoordt de "
        "node tot de volgende periode geen vragen meer.",
        "Every answer costs part of the budget (ρ, zCDP). When it is used up, the node answers "
        "no more questions until the next period.",
    ),
    "earlier_periods": ("Eerdere periodes", "Earlier periods"),
    "connection": ("Verbinding", "Connection"),
    "connected": ("Verbonden met {url}", "Connected to {url}"),
    "not_connected": ("Niet verbonden ({why})", "Not connected ({why})"),
    "not_joined": (
        "Deze node is nog niet aangesloten bij een aggregator ('publieksdata node join').",
        "This node has not joined an aggregator yet ('publieksdata node join').",
    ),
    "last_contact": ("Laatste contact", "Last contact"),
    "waiting_count": (
        "{n} vraag/vragen wachten op je goedkeuring.",
        "{n} question(s) are waiting for your approval.",
    ),
    "audit_ok": (
        "Logboek gecontroleerd: {n} gebeurtenissen, keten intact.",
        "Audit log checked: {n} events, chain intact.",
    ),
    "audit_bad": (
        "Het logboek klopt niet meer: {n} probleem/problemen.",
        "The audit log no longer adds up: {n} problem(s).",
    ),
    # data
    "imports": ("Imports", "Imports"),
    "no_imports": ("Er is nog niets geïmporteerd.", "Nothing has been imported yet."),
    "when": ("Wanneer", "When"),
    "file": ("Bestand", "File"),
    "source": ("Bron", "Source"),
    "profile": ("Profiel", "Profile"),
    "rows_read": ("Gelezen", "Read"),
    "rows_new": ("Nieuw", "New"),
    "rows_updated": ("Gewijzigd", "Updated"),
    "rows_unchanged": ("Ongewijzigd", "Unchanged"),
    "rows_rejected": ("Afgewezen", "Rejected"),
    "holdings": ("Wat er in de node staat", "What the node holds"),
    "admissions": ("Bezoeken (tickets)", "Admissions (tickets)"),
    "persons": ("Personen (gepseudonimiseerd)", "Persons (pseudonymised)"),
    "date_range": ("Periode van de voorstellingen/bezoeken", "Dates of the events/visits"),
    "quality": ("Kwaliteit", "Quality"),
    "missing_pc4": ("Zonder postcode (PC4)", "Without postcode (PC4)"),
    "missing_age": ("Zonder leeftijd", "Without age"),
    "missing_artform": ("Zonder kunstvorm", "Without art form"),
    "advice_pc4": (
        "Veel bezoekers zonder postcode: vraag je ticketingleverancier of de postcode mee kan "
        "in de export, of kies in je importprofiel de juiste kolom.",
        "Many visitors lack a postcode: ask your ticketing supplier to include it in the export, "
        "or point your import profile at the right column.",
    ),
    "advice_age": (
        "Veel bezoeken zonder leeftijd: exporteer de geboortedatum of leeftijd (de node bewaart "
        "alleen de leeftijdsklasse).",
        "Many visits without an age: export the birth date or age (the node keeps only the age "
        "band).",
    ),
    "advice_artform": (
        "Veel bezoeken zonder kunstvorm: koppel in je importprofiel het genre aan een kunstvorm, "
        "of gebruik --default artform=... bij het importeren.",
        "Many visits without an art form: map the genre to an art form in your import profile, "
        "or use --default artform=... when importing.",
    ),
    "advice_geo": (
        "De PC4-tabel is niet geladen: vragen per provincie of gemeente tellen alles als "
        "'onbekend'. Laad hem met 'publieksdata node geo load'.",
        "The PC4 table is not loaded: questions by province or municipality count everything as "
        "'unknown'. Load it with 'publieksdata node geo load'.",
    ),
    "quality_ok": ("Geen opvallende gaten.", "No notable gaps."),
    "retention": ("Bewaartermijn", "Retention"),
    "retention_off": (
        "Er is geen bewaartermijn ingesteld: bezoeken blijven bewaard tot je ze verwijdert. "
        "Stel PUBLIEKSDATA_NODE_RETENTION_DAYS in node.env in.",
        "No retention period is set: admissions are kept until you delete them. Set "
        "PUBLIEKSDATA_NODE_RETENTION_DAYS in node.env.",
    ),
    "retention_on": (
        "Bezoeken ouder dan {days} dagen (vóór {cutoff}) worden elke dag automatisch verwijderd. "
        "Nu vallen er {due} onder.",
        "Admissions older than {days} days (before {cutoff}) are deleted automatically every "
        "day. {due} fall under it now.",
    ),
    # import
    "upload_intro": (
        "Kies een export (CSV of Excel) uit je ticketingsysteem. Namen, e-mailadressen en "
        "adressen worden niet bewaard; het bestand zelf wordt na het importeren verwijderd.",
        "Choose an export (CSV or Excel) from your ticketing system. Names, e-mail addresses and "
        "street addresses are not kept; the file itself is deleted after the import.",
    ),
    "skip_invalid": (
        "Importeer de goede regels ook als sommige regels fout zijn",
        "Import the good rows even if some rows are wrong",
    ),
    "start_import": ("Importeren", "Import"),
    "importing": ("Bezig met importeren …", "Importing …"),
    "import_done": (
        "{file}: {read} regels gelezen, {new} nieuw, {updated} gewijzigd, {unchanged} "
        "ongewijzigd, {rejected} afgewezen.",
        "{file}: {read} rows read, {new} new, {updated} updated, {unchanged} unchanged, "
        "{rejected} rejected.",
    ),
    "import_same": (
        "{file}: dit bestand was al geïmporteerd; er is niets veranderd.",
        "{file}: this file was imported before; nothing changed.",
    ),
    "import_refused": (
        "{n} regel(s) konden niet worden gelezen, dus er is niets geïmporteerd. Verbeter ze, of "
        "vink 'Importeer de goede regels' aan.",
        "{n} row(s) could not be read, so nothing was imported. Fix them, or tick 'Import the "
        "good rows'.",
    ),
    "import_refused_share": (
        "{n} van de {read} regels zijn afgewezen, meer dan de toegestane {allowed}, dus er is "
        "niets geïmporteerd. Zoveel afgewezen regels wijzen meestal op een verkeerd profiel, "
        "een verkeerde tekenset of een verkeerde export. Bekijk de afgewezen regels hieronder; "
        "mogen ze echt worden weggelaten, zet dan max_rejected_share hoger in het profiel.",
        "{n} of {read} rows were rejected, more than the {allowed} allowed, so nothing was "
        "imported. So many rejects usually mean a wrong profile, encoding or export. Look at "
        "the rejected rows below; if they may really be left out, raise max_rejected_share in "
        "the profile.",
    ),
    "import_failed": ("De import is mislukt: {why}", "The import failed: {why}"),
    "rejects": ("Afgewezen regels", "Rejected rows"),
    "line": ("Regel", "Line"),
    "column": ("Kolom", "Column"),
    "reason": ("Reden", "Reason"),
    "download_rejects": ("Alle afgewezen regels (CSV)", "All rejected rows (CSV)"),
    "another_import": ("Nog een bestand importeren", "Import another file"),
    "no_file": ("Kies eerst een bestand.", "Choose a file first."),
    "too_big": ("Het bestand is te groot.", "The file is too large."),
    # approvals
    "approvals_intro": (
        "Deze node beantwoordt vragen pas na jouw goedkeuring. Een vraag die je niet voor de "
        "deadline goedkeurt, vervalt.",
        "This node answers questions only after your approval. A question you do not approve "
        "before its deadline expires.",
    ),
    "approvals_auto": (
        "Deze node beantwoordt vragen automatisch binnen het beleid. Zet goedkeuring aan onder "
        "Beleid.",
        "This node answers questions automatically within its policy. Turn approval on under "
        "Policy.",
    ),
    "nothing_waiting": ("Er wacht niets op goedkeuring.", "Nothing is waiting for approval."),
    "asked_by": ("Gevraagd door {analyst} via {via}", "Asked by {analyst} via {via}"),
    "deadline": ("Deadline", "Deadline"),
    "approve": ("Goedkeuren en beantwoorden", "Approve and answer"),
    "decline": ("Weigeren", "Decline"),
    "decided_approved": ("Goedgekeurd: de vraag wordt beantwoord.", "Approved: it is answered."),
    "decided_declined": ("Geweigerd.", "Declined."),
    "decision_late": (
        "Deze vraag wacht niet meer (al besloten of verlopen).",
        "This question is no longer waiting (decided already, or expired).",
    ),
    "decision_too_late": (
        "Te laat: de deadline van deze vraag is verstreken. De ronde is al gesloten of verder "
        "zonder deze instelling; er wordt niets beantwoord en niets van het budget gebruikt.",
        "Too late: this question's deadline has passed. The round has closed or gone on without "
        "this institution; nothing is answered and no budget is spent.",
    ),
    "recent_decisions": ("Eerdere beslissingen", "Earlier decisions"),
    "status_approved": ("goedgekeurd", "approved"),
    "status_declined": ("geweigerd", "declined"),
    "status_expired": ("verlopen", "expired"),
    "status_waiting": ("wacht", "waiting"),
    # audit
    "audit_intro": (
        "Alles wat deze node heeft beantwoord of geweigerd, en elke wijziging in beheer. Het "
        "logboek kan alleen worden aangevuld; elke regel bevat de hash van de vorige, zodat "
        "wijzigingen zichtbaar worden ('publieksdata node audit verify').",
        "Everything this node answered or refused, and every change made in administration. "
        "The log can only be appended to; each entry holds the hash of the one before, so "
        "changes show ('publieksdata node audit verify').",
    ),
    "head_hash": ("Laatste hash", "Head hash"),
    "export_csv": ("Exporteren als CSV", "Export as CSV"),
    "all_kinds": ("Alles", "Everything"),
    "filter": ("Toon", "Show"),
    "what": ("Wat", "What"),
    "who": ("Wie", "Who"),
    "cost": ("Kosten", "Cost"),
    "values_left": ("Wat de node verliet", "What left the node"),
    "secure_values": (
        "Een gemaskeerde vector (beveiligd samenvoegen): alleen de som over alle instellingen is "
        "leesbaar. Het eigen deel bevatte ruis; drempel t = {t}.",
        "A masked vector (secure aggregation): only the sum over all institutions can be read. "
        "This node's share carried noise; threshold t = {t}.",
    ),
    "values_mismatch": (
        "Let op: het opgeslagen antwoord verschilt van wat het logboek vastlegde.",
        "Warning: the stored answer differs from what the log recorded.",
    ),
    "more_cells": (
        "… en nog {n} cellen (alle cellen staan in het ondertekende antwoord)",
        "… and {n} more cells (the signed answer has them all)",
    ),
    "signed_answer": (
        "Het ondertekende antwoord precies zoals het de node verliet (JSON)",
        "The signed answer exactly as it left the node (JSON)",
    ),
    "older": ("Oudere gebeurtenissen", "Older events"),
    "no_events": ("Nog niets in het logboek.", "Nothing in the log yet."),
    # policy
    "policy_intro": (
        "Wat deze node wil beantwoorden. Wijzigingen gelden direct en komen in het logboek.",
        "What this node is willing to answer. Changes apply at once and go into the audit log.",
    ),
    "allowed_dimensions": ("Toegestane indelingen", "Allowed breakdowns"),
    "all_dimensions": (
        "Alle indelingen toestaan (ook toekomstige)",
        "Allow every breakdown (also future ones)",
    ),
    "max_cells": ("Maximaal aantal cellen per vraag", "Maximum number of cells per question"),
    "max_rho_per_query": ("Maximale kosten per vraag (ρ)", "Maximum cost per question (ρ)"),
    "budget_rho": ("Budget per periode (ρ)", "Budget per period (ρ)"),
    "analyst_budget_rho": (
        "Budget per analist per periode (ρ; leeg = geen apart plafond)",
        "Budget per analyst per period (ρ; empty = no separate cap)",
    ),
    "secure_answers": (
        "Meedoen aan beveiligd samenvoegen",
        "Take part in secure aggregation",
    ),
    "secure_max_worst_rho": (
        "Grens voor het slechtste geval bij beveiligd samenvoegen (ρ)",
        "Limit on the worst case in secure rounds (ρ)",
    ),
    "never_stored": (
        "Namen, e-mailadressen, telefoonnummers, straatadressen, volledige postcodes en "
        "geboortedata bewaart deze node nooit.",
        "Names, e-mail addresses, phone numbers, street addresses, full postcodes and "
        "birth dates are never stored by this node.",
    ),
    "scroll_hint": (
        "Past de tabel niet op het scherm? Schuif hem opzij voor alle kolommen →",
        "Table wider than the screen? Swipe it sideways for every column →",
    ),
    "approval": ("Beantwoorden", "Answering"),
    "approval_auto": ("Automatisch, binnen dit beleid", "Automatically, within this policy"),
    "approval_manual": ("Pas na mijn goedkeuring", "Only after my approval"),
    "save": ("Opslaan", "Save"),
    "saved": ("Opgeslagen: {names}.", "Saved: {names}."),
    "nothing_changed": ("Er is niets veranderd.", "Nothing changed."),
    "not_valid": (
        "Niet opgeslagen; controleer de gemarkeerde velden.",
        "Not saved; check the marked fields.",
    ),
    "trusted": ("Vertrouwde aggregator en sleutels", "Trusted aggregator and keys"),
    "aggregator": ("Aggregator", "Aggregator"),
    "fingerprint": ("Vingerafdruk", "Fingerprint"),
    "key_id": ("Sleutel", "Key"),
    "label": ("Omschrijving", "Label"),
    "revoke": ("Vertrouwen intrekken", "Revoke trust"),
    "revoked": (
        "Sleutel {key_id} wordt niet meer vertrouwd; vragen met die sleutel worden geweigerd.",
        "Key {key_id} is no longer trusted; questions signed with it are refused.",
    ),
    "no_keys": ("Er worden geen sleutels vertrouwd.", "No keys are trusted."),
    "recent_changes": ("Laatste wijzigingen", "Recent changes"),
    # gdpr
    "gdpr_intro": (
        "Een bezoeker mag weten wat er over hem of haar is opgeslagen, en mag vragen dat te "
        "wissen. Vul het klantnummer of e-mailadres in dat de bezoeker bij jullie gebruikt. "
        "Het wordt niet opgeslagen, ook niet in het logboek.",
        "A visitor may know what is stored about them, and may ask for it to be erased. Enter "
        "the customer number or e-mail address the visitor uses with you. It is not stored, "
        "not even in the audit log.",
    ),
    "identifier": ("Klantnummer of e-mailadres", "Customer number or e-mail address"),
    "identity_checked": (
        "Ik heb gecontroleerd dat het verzoek van deze persoon zelf komt",
        "I have checked that the request comes from this person",
    ),
    "gdpr_access": ("Inzage", "Access"),
    "gdpr_erasure": ("Wissen", "Erasure"),
    "show_data": ("Gegevens tonen", "Show data"),
    "prepare_erasure": ("Wissen voorbereiden", "Prepare erasure"),
    "confirm_erasure": ("Definitief wissen", "Erase for good"),
    "erase_question": (
        "Er zijn {n} bezoek(en) van deze persoon opgeslagen. Wissen kan niet ongedaan worden "
        "gemaakt.",
        "{n} admission(s) of this person are stored. Erasing cannot be undone.",
    ),
    "erased": ("Gewist: {n} bezoek(en).", "Erased: {n} admission(s)."),
    "not_found": (
        "Over deze persoon is niets opgeslagen.",
        "Nothing is stored about this person.",
    ),
    "need_check": (
        "Bevestig eerst dat je de identiteit hebt gecontroleerd.",
        "First confirm that you checked the person's identity.",
    ),
    "past_requests": ("Eerdere verzoeken", "Earlier requests"),
    "found": ("Gevonden", "Found"),
    "yes": ("ja", "yes"),
    "no": ("nee", "no"),
    "person_data": ("Opgeslagen over deze persoon", "Stored about this person"),
    # benchmark
    "benchmark_intro": (
        "Je eigen exacte cijfers, hier berekend en nooit verstuurd, naast de laatste "
        "gepubliceerde sectorcijfers voor dezelfde indelingen.",
        "Your own exact figures, computed here and never sent, next to the latest published "
        "sector figures for the same breakdowns.",
    ),
    "no_release": (
        "Er is nog geen sectorpublicatie beschikbaar ({why}).",
        "No sector release is available yet ({why}).",
    ),
    "release_from": (
        "Sectorpublicatie {slug}, gepubliceerd {when}",
        "Sector release {slug}, published {when}",
    ),
    "category": ("Categorie", "Category"),
    "ours": ("Wij", "Us"),
    "our_share": ("Ons aandeel", "Our share"),
    "sector": ("Sector", "Sector"),
    # A node's own distinct persons are deduplicated within the node; the sector's are a sum of
    # such counts over the institutions (protocol.figures).
    "ours_persons": (
        f"Wij ({institution_label('persons', 'nl')})",
        f"Us ({institution_label('persons', 'en')})",
    ),
    "sector_persons": (
        f"Sector ({sector_label('persons', 'nl')})",
        f"Sector ({sector_label('persons', 'en')})",
    ),
    "persons_note": (
        "Bij ons telt elke bezoeker één keer. Het sectorcijfer is de som van zulke aantallen "
        "over alle instellingen, niet ontdubbeld: wie drie instellingen bezocht, telt daar drie "
        "keer mee. Ons aandeel in bezoekers is daardoor geen aandeel in het aantal verschillende "
        "mensen.",
        "Here every visitor counts once. The sector figure is the sum of such counts over all "
        "institutions, not deduplicated: someone who visited three institutions counts three "
        "times there. So our share of visitors is not a share of the number of different people.",
    ),
    "sector_share": ("Aandeel sector", "Sector share"),
    "share_note": (
        "Aandelen zijn procenten van het eigen totaal en van het sectortotaal in deze tabel. "
        "Sectorcijfers hebben een foutmarge; zie de publicatie.",
        "Shares are percentages of our own total and of the sector total in this table. "
        "Sector figures carry a margin of error; see the release.",
    ),
    "not_local": ("Niet lokaal te berekenen ({why}).", "Cannot be computed locally ({why})."),
}

MEASURES = {
    "visits": ("bezoeken", "visits"),
    "persons": ("unieke bezoekers", "unique visitors"),
    "revenue": ("omzet", "revenue"),
}

PERIOD_WORDS = {
    "year": ("van dit jaar", "of this year"),
    "quarter": ("van dit kwartaal", "of this quarter"),
    "month": ("van deze maand", "of this month"),
}

KIND_WORDS: dict[str, tuple[str, str]] = {
    "answer": ("Beantwoord", "Answered"),
    "refusal": ("Geweigerd", "Refused"),
    "rejected_task": ("Ongeldige opdracht afgewezen", "Invalid task rejected"),
    "approval_waiting": ("Wacht op goedkeuring", "Waiting for approval"),
    "approved": ("Goedgekeurd", "Approved"),
    "declined": ("Geweigerd door beheerder", "Declined by the operator"),
    "approval_expired": ("Goedkeuring verlopen", "Approval expired"),
    "policy_change": ("Beleid gewijzigd", "Policy changed"),
    "trust_revoked": ("Vertrouwen ingetrokken", "Trust revoked"),
    "key_rotation": ("Aggregatorsleutel vervangen", "Aggregator key rotated"),
    "import": ("Geïmporteerd", "Imported"),
    "gdpr_access": ("AVG-inzage", "GDPR access"),
    "gdpr_erasure": ("AVG-wissing", "GDPR erasure"),
    "retention": ("Bewaartermijn toegepast", "Retention applied"),
    "login_failed": ("Mislukte aanmelding", "Failed login"),
    "locked_out": ("Aanmelden geblokkeerd", "Login locked"),
    "password_set": ("Wachtwoord ingesteld", "Password set"),
}


def t(lang: str, key: str, **values: Any) -> str:
    nl, en = WORDS[key]
    text = nl if lang == "nl" else en
    return text.format(**values) if values else text


def kind_label(lang: str, kind: str) -> str:
    nl, en = KIND_WORDS.get(kind, (kind, kind))
    return nl if lang == "nl" else en


def number(value: float, lang: str, digits: int = 0) -> str:
    text = f"{value:,.{digits}f}"
    if lang == "nl":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def small(value: float | None, lang: str) -> str:
    """A privacy parameter: 0,01, 0,69, 1e-07 (nl) or 0.01, 0.69, 1e-07 (en)."""
    if value is None:
        return "—"
    text = f"{value:.3g}" if value == 0 or value >= 1e-3 else f"{value:.0e}"
    return text.replace(".", ",") if lang == "nl" else text


def field_value(value: Any, lang: str) -> str:
    """A number in a form field, exactly (it is read back on saving): 0,25 (nl) or 0.25 (en)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)  # what the operator typed, shown again with its error
    text = str(int(value)) if float(value).is_integer() else repr(float(value))
    return text.replace(".", ",") if lang == "nl" else text


def code_label(dimension: str, code: str | None, lang: str) -> str:
    """A catalogue code as the reader names it ("45_64" → "45 tot en met 64")."""
    if code is None:
        return "—"
    dim = DIMENSIONS.get(dimension)
    return dim.label(code, lang) if dim is not None else code


def percent(fraction: float, lang: str) -> str:
    digits = 0 if fraction >= 0.01 or fraction == 0 else 1
    if 0 < fraction < 0.001:
        return "< 0,1%" if lang == "nl" else "< 0.1%"
    return number(fraction * 100, lang, digits) + "%"


def moment(value: datetime | str | None, lang: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime("%d-%m-%Y %H:%M" if lang == "nl" else "%Y-%m-%d %H:%M")


def day(value: date | str | None, lang: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return value.strftime("%d-%m-%Y" if lang == "nl" else "%Y-%m-%d")


def _dim(name: str, lang: str) -> str:
    dim = DIMENSIONS.get(name)
    if dim is None:
        return name
    return (dim.nl if lang == "nl" else dim.en).lower()


def _period(start: str, end: str, lang: str) -> str:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if first.month == 1 and first.day == 1 and last.month == 12 and last.day == 31:
        if first.year == last.year:
            return str(first.year)
        return f"{first.year}–{last.year}"
    return f"{day(first, lang)} – {day(last, lang)}"


def describe(
    query: dict[str, Any] | None,
    lang: str,
    *,
    rho: float | None = None,
    cap_rho: float | None = None,
    period_kind: str = "year",
) -> str:
    """E.g. "Visits per month per art form for 2025, costs 2% of this year's budget"."""
    if not query:
        return ""
    names = [MEASURES.get(m, (m, m))[0 if lang == "nl" else 1] for m in query.get("measures", [])]
    joined = " en " if lang == "nl" else " and "
    words = [", ".join(names[:-1]) + joined + names[-1] if len(names) > 1 else "".join(names)]
    text = words[0][:1].upper() + words[0][1:]
    per = "per" if lang == "nl" else "by"
    for name in query.get("group_by", []):
        text += f" {per} {_dim(name, lang)}"
    start, end = query.get("period", [None, None])
    if start and end:
        text += (" in " if lang == "nl" else " for ") + _period(start, end, lang)
    filters = query.get("filters") or {}
    for name, codes in filters.items():
        dim = DIMENSIONS.get(name)
        labels = ", ".join(dim.label(c, lang) if dim else c for c in codes)
        text += (
            f", alleen {_dim(name, lang)}: " if lang == "nl" else f", only {_dim(name, lang)}: "
        ) + labels
    if query.get("mode") == "secure":
        text += " (beveiligd samengevoegd)" if lang == "nl" else " (secure aggregation)"
    if rho is not None and cap_rho:
        share = percent(rho / cap_rho, lang)
        nl, en = PERIOD_WORDS.get(period_kind, PERIOD_WORDS["year"])
        text += (
            f", kost {share} van het budget {nl}"
            if lang == "nl"
            else f", costs {share} of the budget {en}"
        )
    return text


# The policy settings as a Dutch or English reader names them (keys of a policy change).
POLICY_FIELDS: dict[str, tuple[str, str]] = {
    "approval": ("goedkeuring", "approval"),
    "allowed_dimensions": ("toegestane indelingen", "allowed breakdowns"),
    "max_cells": ("maximaal aantal cellen", "maximum number of cells"),
    "max_rho_per_query": ("maximale kosten per vraag (ρ)", "maximum cost per question (ρ)"),
    "budget_rho": ("budget per periode (ρ)", "budget per period (ρ)"),
    "analyst_budget_rho": ("budget per analist (ρ)", "budget per analyst (ρ)"),
    "secure_answers": ("beveiligd samenvoegen", "secure aggregation"),
    "secure_max_worst_rho": (
        "maximale kosten als de drempel faalt (ρ)",
        "maximum cost if the threshold fails (ρ)",
    ),
}
POLICY_VALUES: dict[str, tuple[str, str]] = {
    "auto": ("automatisch", "automatic"),
    "manual": ("handmatig", "manual"),
}


def policy_field(lang: str, name: str) -> str:
    nl, en = POLICY_FIELDS.get(name, (name, name))
    return nl if lang == "nl" else en


def _policy_value(lang: str, value: Any) -> str:
    nl = lang == "nl"
    if value is None:
        return "geen grens / alle" if nl else "no limit / all"
    if isinstance(value, bool):
        return ("ja" if value else "nee") if nl else ("yes" if value else "no")
    if isinstance(value, int | float):
        return f"{value:g}".replace(".", ",") if nl else f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_dim(str(v), lang) for v in value) or "—"
    words = POLICY_VALUES.get(str(value))
    return (words[0] if nl else words[1]) if words else str(value)


def policy_change(lang: str, changes: dict[str, Any]) -> str:
    """E.g. "goedkeuring: automatisch → handmatig; maximaal aantal cellen: 20000 → 500"."""
    return "; ".join(
        f"{policy_field(lang, name)}: {_policy_value(lang, change.get('old'))} → "
        f"{_policy_value(lang, change.get('new'))}"
        for name, change in changes.items()
        if isinstance(change, dict)
    )
