"""The public site's words in Dutch and English, and numbers formatted the way each reads them."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

from aggregator.releases.compose import MONTHS_EN, MONTHS_NL

LANGS = ("nl", "en")

MONTHS = {"nl": MONTHS_NL, "en": MONTHS_EN}

WORDS: dict[str, tuple[str, str]] = {
    "site": (
        "Publieksstatistieken van de culturele sector",
        "Audience statistics of the cultural sector",
    ),
    "skip": ("Naar de inhoud", "Skip to content"),
    "other_lang": ("English", "Nederlands"),
    "other_lang_code": ("en", "nl"),
    "releases": ("Publicaties", "Releases"),
    "intro": (
        "Cijfers over het publiek van de deelnemende culturele instellingen. Elke instelling "
        "houdt haar eigen gegevens; de cijfers zijn samengevoegd met differentiële privacy, zodat "
        "ze over één bezoeker maar een begrensde hoeveelheid verraden (de ε van elke publicatie). "
        "Elke publicatie is ondertekend en kan worden gecontroleerd.",
        "Figures on the audiences of the participating cultural institutions. Every institution "
        "keeps its own data; the figures were merged with differential privacy, so that they "
        "reveal only a bounded amount about any one visitor (each release's ε). Every release is "
        "signed and can be checked.",
    ),
    "none_yet": ("Er is nog niets gepubliceerd.", "Nothing has been published yet."),
    "unverified": ("Controle mislukt", "Fails verification"),
    "unverified_list": (
        "Deze publicaties kloppen niet meer met hun handtekening en worden niet getoond:",
        "These releases no longer match their signature and are not shown:",
    ),
    "unverified_text": (
        "Deze publicatie klopt niet meer met de handtekening waarmee zij is gepubliceerd: zij "
        "is na ondertekening veranderd. Daarom tonen we haar cijfers niet. De andere publicaties "
        "zijn niet aangetast.",
        "This release no longer matches the signature it was published with: it was changed "
        "after signing. Its figures are therefore not shown. The other releases are not "
        "affected.",
    ),
    "period": ("Periode", "Period"),
    "published": ("Gepubliceerd", "Published"),
    "version": ("versie", "version"),
    "corrects": ("verbetert versie", "corrects version"),
    "corrected_by": ("Er is een verbeterde versie", "There is a corrected version"),
    "corrected_by_v": ("verbeterd in versie {v}", "corrected by version {v}"),
    "correction": ("Verbetering", "Correction"),
    "catalogue": ("Open-datacatalogus (DCAT-AP)", "Open data catalogue (DCAT-AP)"),
    "contents": ("Inhoud", "Contents"),
    "interval": ("95%-marge", "95% interval"),
    "in_unit": ("{what} ({unit})", "{what} ({unit})"),
    "total": ("Totaal", "Total"),
    "dot_note": (
        "Een punt (.) betekent: te onzeker om te publiceren (de marge is meer dan {limit}% "
        "van het cijfer).",
        "A dot (.) means: too uncertain to publish (the margin is more than {limit}% of the "
        "figure).",
    ),
    "chart_of": ("Grafiek", "Chart"),
    "chart_desc": (
        "{title}. Balken of punten tonen het cijfer, de lijnen de 95%-marge. De tabel hieronder "
        "bevat dezelfde cijfers.",
        "{title}. Bars or points show the figure, the lines its 95% interval. The table below "
        "holds the same figures.",
    ),
    "chart_desc_panels": (
        "{title}: één kleine grafiek per {dim}, alle op dezelfde schaal. Balken of punten tonen "
        "het cijfer, de lijnen de 95%-marge. De tabel hieronder bevat dezelfde cijfers.",
        "{title}: one small chart per {dim}, all on the same scale. Bars or points show the "
        "figure, the lines its 95% interval. The table below holds the same figures.",
    ),
    "chart_panels": (
        "Eén grafiek per {dim}, alle op dezelfde schaal.",
        "One chart per {dim}, all on the same scale.",
    ),
    "chart_desc_margin": (
        "{title}: de totalen per {dim}, met hun 95%-marge. Een totaal met een te onzeker cijfer "
        "erin staat als punt (.). De tabel hieronder bevat alle cellen.",
        "{title}: the totals by {dim}, with their 95% interval. A total that includes a figure "
        "too uncertain to publish is a dot (.). The table below holds every cell.",
    ),
    "chart_margin": (
        "De grafiek toont de totalen per {dim}; de tabel alle cellen.",
        "The chart shows the totals by {dim}; the table every cell.",
    ),
    "chart_largest": (
        "De grafiek toont de {n} grootste van de {total}; de tabel ze allemaal.",
        "The chart shows the {n} largest of {total}; the table shows all of them.",
    ),
    "no_chart": (
        "Geen grafiek: alle cijfers van deze tabel zijn te onzeker om te publiceren.",
        "No chart: every figure in this table is too uncertain to publish.",
    ),
    "no_chart_table": (
        "Deze tabel heeft te veel cellen voor een leesbare grafiek; alle cijfers staan in de "
        "tabel.",
        "This table has too many cells for a readable chart; every figure is in the table.",
    ),
    "scroll_hint": (
        "Past de tabel niet op het scherm? Schuif hem opzij voor alle kolommen →",
        "Table wider than the screen? Swipe it sideways for every column →",
    ),
    "method": ("Methode", "Method"),
    "privacy_cost": ("Privacykosten", "Privacy cost"),
    "privacy_cost_text": (
        "ρ = {rho} (zCDP) voor de hele publicatie, gelijk aan (ε = {eps}, δ = {delta}). Per "
        "persoon, per instelling.",
        "ρ = {rho} (zCDP) for the whole release, equal to (ε = {eps}, δ = {delta}). Per person, "
        "per institution.",
    ),
    "privacy_cost_eps": (
        "ε = {eps} (zuivere differentiële privacy) voor de hele publicatie. Per persoon, per "
        "instelling.",
        "ε = {eps} (pure differential privacy) for the whole release. Per person, per institution.",
    ),
    "mechanism": ("Mechanisme", "Mechanism"),
    "persons_method": (
        "Bezoekers: per instelling geteld, opgeteld",
        "Visitors: counted per institution, summed",
    ),
    "see_method": ("Zie de methode.", "See the method."),
    "gaussian": ("discrete Gaussische ruis", "discrete Gaussian noise"),
    "laplace": ("discrete Laplace-ruis", "discrete Laplace noise"),
    "mode": ("Samenvoegen", "Aggregation"),
    "secure": (
        "beveiligd: de aggregator zag alleen de sectorsom (drempel {t} instellingen)",
        "secure: the aggregator saw only the sector sum (threshold {t} institutions)",
    ),
    "independent": (
        "onafhankelijk: elke instelling voegde zelf alle ruis toe",
        "independent: each institution added all of the noise itself",
    ),
    "bounds": ("Bijdrage per persoon", "Contribution per person"),
    "bounds_text": (
        "hoogstens {visits} bezoeken en {cells} cellen per persoon per instelling",
        "at most {visits} visits and {cells} cells per person per institution",
    ),
    "institutions": ("Deelnemende instellingen", "Participating institutions"),
    "coverage": ("Dekking", "Coverage"),
    "coverage_text": (
        "{answered} van {asked} gevraagde instellingen",
        "{answered} of {asked} institutions asked",
    ),
    "missing": ("Ontbrekend", "Missing"),
    "catalogue_version": ("Catalogusversie", "Catalogue version"),
    "confidence": ("Betrouwbaarheid", "Confidence"),
    "confidence_text": ("{level}%-intervallen", "{level}% intervals"),
    "postprocessing": ("Nabewerking", "Post-processing"),
    "pp_non_negative": (
        "negatieve schattingen zijn als 0 gepubliceerd",
        "negative estimates are published as 0",
    ),
    "pp_rounding": (
        "cijfers zijn afgerond op hele getallen, zo dat elke tabel precies optelt tot haar "
        "totaal; de marges zijn afgerond op een tiende van hun breedte (een macht van tien)",
        "figures are rounded to whole numbers such that every table adds up exactly to its "
        "total; the margins are rounded to a tenth of their width (a power of ten)",
    ),
    "pp_totals": (
        "de tabellen zijn op elkaar afgestemd: wat meer tabellen gemeen hebben (zoals het "
        "totaal aantal bezoeken) is in elke tabel hetzelfde cijfer, de gewogen kleinste-"
        "kwadratenschatting uit alle tabellen samen. Een totaal telt ook de cellen mee die als "
        "punt (.) staan; de zichtbare cellen tellen dan op tot minder dan het totaal. Dit is "
        "nabewerking van de beschermde cijfers en kost geen privacy",
        "the tables are made consistent with each other: what several tables share (such as "
        "the total number of visits) is the same figure in each of them, the weighted "
        "least-squares estimate from all the tables together. A total includes the cells "
        "shown as a dot (.); the visible cells then add up to less than the total. This is "
        "post-processing of the protected figures and costs no privacy",
    ),
    "pp_suppress": (
        "cijfers met een marge van meer dan {limit}% zijn vervangen door een punt (.)",
        "figures with a margin of more than {limit}% are replaced by a dot (.)",
    ),
    "pp_none": ("geen", "none"),
    "privacy_link": ("Hoe de privacy beschermd wordt", "How privacy is protected"),
    "per_table": ("Per tabel", "Per table"),
    "downloads": ("Downloads", "Downloads"),
    "dl_json": ("De hele publicatie (JSON, ondertekend)", "The whole release (JSON, signed)"),
    "dl_csv": ("Tabel als CSV (internationaal)", "Table as CSV"),
    "dl_csv_nl": ("CSV voor Nederlandse Excel (;)", "CSV for Dutch Excel (;)"),
    "verify": ("Controleren", "Verify"),
    "verify_text": (
        "Deze publicatie is ondertekend met de sleutel van de aggregator en gekoppeld aan alle "
        "eerdere publicaties. Controleer haar met:",
        "This release is signed with the aggregator's key and linked to every earlier release. "
        "Check it with:",
    ),
    "hash": ("Vingerafdruk (SHA-256)", "Hash (SHA-256)"),
    "key": ("Sleutel", "Key"),
    "sequence": ("Nummer in de keten", "Number in the chain"),
    "previous": ("Vorige publicatie", "Previous release"),
    "first": ("de eerste", "the first"),
    "not_found": ("Niet gevonden", "Not found"),
    "not_found_text": (
        "Deze pagina bestaat niet. Bekijk de lijst met publicaties.",
        "This page does not exist. See the list of releases.",
    ),
    "back": ("Alle publicaties", "All releases"),
    "privacy_title": ("Hoe de privacy beschermd wordt", "How privacy is protected"),
}


def t(key: str, lang: str, **values: object) -> str:
    nl, en = WORDS[key]
    text = en if lang == "en" else nl
    return text.format(**values) if values else text


def number(value: float | None, lang: str) -> str:
    """4.100.000 or 12,5 (nl); 4,100,000 or 12.5 (en); '.' for a missing figure.

    Whole numbers get no decimals; any other number gets exactly the digits of its shortest
    round-trip form, so that the page reads back to the release's JSON value.
    """
    if value is None or not math.isfinite(value):
        return "."
    value = float(value)
    text = f"{value:,.0f}" if value.is_integer() else f"{Decimal(repr(value)):,f}"
    if lang == "nl":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def small(value: float, lang: str) -> str:
    """A privacy parameter: 0.1, 1.94, 1e-07 as written in each language."""
    text = f"{value:.3g}" if value >= 1e-3 else f"{value:.0e}".replace("e-0", "e-")
    return text.replace(".", ",") if lang == "nl" else text


def day(value: date | datetime, lang: str) -> str:
    return f"{value.day} {MONTHS[lang][value.month - 1]} {value.year}"
