"""The DCAT-AP catalogue of every release, in JSON-LD, for open-data portals to harvest.

Follows DCAT-AP 3.0.0 (SEMIC, https://semiceu.github.io/DCAT-AP/releases/3.0.0/): a
``dcat:Catalog`` with its mandatory title, description and publisher, its datasets and the
recommended homepage, languages, licence, themes and dates; per release a ``dcat:Dataset``
(mandatory title and description; recommended publisher, contact point, keywords, spatial and
temporal coverage, theme, distributions; optional landing page, version, replaces) and per
download a ``dcat:Distribution`` (mandatory access URL; recommended description, format and
licence; optional download URL, media type, title). Vocabularies:
the EU's authority tables for languages, file types and data themes, and IANA media types.
``web/dcat-ap-schema.json`` states these rules as a JSON Schema, which the tests apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aggregator.releases.chain import SealedRelease
from aggregator.releases.document import Text

# Every release is open data under Creative Commons Attribution 4.0 International (CC BY 4.0).
LICENSE = "https://creativecommons.org/licenses/by/4.0/"
EU = "http://publications.europa.eu/resource/authority"
CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "adms": "http://www.w3.org/ns/adms#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "pd": "https://publieksdata.nl/ns#",
}
IANA = "https://www.iana.org/assignments/media-types"
MEDIA = {
    "json": (f"{IANA}/application/json", f"{EU}/file-type/JSON"),
    "csv": (f"{IANA}/text/csv", f"{EU}/file-type/CSV"),
    "html": (f"{IANA}/text/html", f"{EU}/file-type/HTML"),
}


def _text(value: Text) -> list[dict[str, str]]:
    return [{"@value": value.nl, "@language": "nl"}, {"@value": value.en, "@language": "en"}]


def _id(url: str) -> dict[str, str]:
    return {"@id": url}


DESCRIPTIONS = {
    "json": Text(
        nl="De hele publicatie met methode, ondertekend door de aggregator.",
        en="The whole release with its method, signed by the aggregator.",
    ),
    "csv": Text(
        nl="Eén tabel: per cel de code en het label, het cijfer, de 95%-marge en de standaardfout.",
        en="One table: per cell its code and label, the figure, its 95% interval and standard "
        "error.",
    ),
    "html": Text(
        nl="De publicatie als webpagina, met grafieken en tabellen.",
        en="The release as a web page, with charts and tables.",
    ),
}


def _distribution(url: str, kind: str, title: Text) -> dict[str, Any]:
    media, file_type = MEDIA[kind]
    return {
        "@id": url,
        "@type": "dcat:Distribution",
        "dct:title": _text(title),
        "dct:description": _text(DESCRIPTIONS[kind]),
        "dcat:accessURL": _id(url),
        "dcat:downloadURL": _id(url),
        "dcat:mediaType": _id(media),
        "dct:format": _id(file_type),
        "dct:license": _id(LICENSE),
    }


def catalog(
    releases: Sequence[SealedRelease],
    base: str,
    publisher: str,
    *,
    unverified: Sequence[str] = (),
) -> dict[str, Any]:
    """The catalogue; ``base`` is the site's address without a trailing slash. ``releases`` are
    the verified releases; ``unverified`` the slugs of stored releases that fail verification,
    listed under ``pd:failsVerification`` so that a harvester sees them flagged, not gone."""
    agent = {"@id": f"{base}/#publisher", "@type": "foaf:Agent", "foaf:name": publisher}
    contact = {
        "@id": f"{base}/#contact",
        "@type": "vcard:Organization",
        "vcard:fn": publisher,
        "vcard:hasURL": _id(f"{base}/nl/"),
    }
    replaced_by: dict[str, str] = {}
    by_hash = {r.hash: r for r in releases}
    for release in releases:
        corrected = by_hash.get(release.document.corrects or "")
        if corrected is not None:
            replaced_by[corrected.slug] = release.slug
    datasets = []
    for release in releases:
        doc = release.document
        url = f"{base}/releases/{release.slug}"
        distributions = [
            _distribution(f"{url}.json", "json", Text(nl="Publicatie (JSON, ondertekend)",
                                                     en="Release (JSON, signed)")),
            _distribution(f"{base}/nl/releases/{release.slug}", "html",
                          Text(nl="Webpagina (Nederlands)", en="Web page (Dutch)")),
            _distribution(f"{base}/en/releases/{release.slug}", "html",
                          Text(nl="Webpagina (Engels)", en="Web page (English)")),
        ] + [
            _distribution(f"{url}/{table.table_id}.csv", "csv", table.title)
            for table in doc.tables
        ]  # fmt: skip
        dataset: dict[str, Any] = {
            "@id": url,
            "@type": "dcat:Dataset",
            "dct:identifier": release.slug,
            "dct:title": _text(doc.title),
            "dct:description": _text(doc.description),
            "dct:issued": {"@value": doc.published_at.isoformat(), "@type": "xsd:dateTime"},
            "dct:publisher": agent,
            "dcat:contactPoint": contact,
            "dct:language": [_id(f"{EU}/language/NLD"), _id(f"{EU}/language/ENG")],
            "dct:spatial": _id(f"{EU}/country/NLD"),
            "dcat:theme": _id(f"{EU}/data-theme/EDUC"),  # education, culture and sport
            "dcat:keyword": [
                {"@value": "cultuur", "@language": "nl"},
                {"@value": "publiek", "@language": "nl"},
                {"@value": "culture", "@language": "en"},
                {"@value": "audiences", "@language": "en"},
            ],
            "dct:temporal": {
                "@type": "dct:PeriodOfTime",
                "dcat:startDate": {
                    "@value": doc.methodology.period_start.isoformat(),
                    "@type": "xsd:date",
                },
                "dcat:endDate": {
                    "@value": doc.methodology.period_end.isoformat(),
                    "@type": "xsd:date",
                },
            },
            "dcat:version": str(doc.version),
            "owl:versionInfo": str(doc.version),
            "dcat:landingPage": _id(f"{base}/nl/releases/{release.slug}"),
            "dct:license": _id(LICENSE),
            "adms:identifier": {"@type": "adms:Identifier", "skos:notation": release.hash},
            "dcat:distribution": distributions,
        }
        if doc.corrects is not None and doc.corrects in by_hash:
            dataset["dct:replaces"] = _id(f"{base}/releases/{by_hash[doc.corrects].slug}")
        if release.slug in replaced_by:
            dataset["dct:isReplacedBy"] = _id(f"{base}/releases/{replaced_by[release.slug]}")
        datasets.append(dataset)
    catalogue: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": f"{base}/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": _text(Text(nl=f"Publicaties van {publisher}", en=f"Releases of {publisher}")),
        "dct:description": _text(
            Text(
                nl="Ondertekende, differentieel private statistieken over het publiek van "
                "culturele instellingen.",
                en="Signed, differentially private statistics on the audiences of cultural "
                "institutions.",
            )
        ),
        "dct:publisher": agent,
        "foaf:homepage": _id(f"{base}/nl/"),
        "dct:language": [_id(f"{EU}/language/NLD"), _id(f"{EU}/language/ENG")],
        "dct:license": _id(LICENSE),
        "dcat:themeTaxonomy": _id(f"{EU}/data-theme"),
        "dcat:dataset": datasets,
    }
    if unverified:
        catalogue["pd:failsVerification"] = [
            {"@id": f"{base}/releases/{slug}", "dct:identifier": slug} for slug in unverified
        ]
    if releases:
        issued = [r.document.published_at for r in releases]
        catalogue["dct:issued"] = {"@value": min(issued).isoformat(), "@type": "xsd:dateTime"}
        catalogue["dct:modified"] = {"@value": max(issued).isoformat(), "@type": "xsd:dateTime"}
    return catalogue
