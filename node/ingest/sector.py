"""The sector pseudonym at import: blind, ask t key holders, combine, unblind, store.

:class:`SectorPseudonymiser` turns (normalised identifier, year) pairs into the stored values of
:func:`protocol.sector.stored_value`. Per batch it blinds every input with a fresh scalar, sends
the same blinded elements to ``t`` key holders at once, checks each signed answer (the holder's
key, this request's nonce, the key set, the count) and combines them with the Lagrange
coefficients folded into the unblinding. A holder that does not answer is replaced by the next
enrolled one; with fewer than ``t`` answering, :class:`SectorUnavailable` ends the import, whose
transaction then rolls back: nothing is half-imported.

:func:`attach` is the importer's step: for the persons of this file that have an identifier, it
finds the (person, event year) pairs that have no sector value yet, derives them and inserts
them, in the import's own transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import httpx
from pydantic import ValidationError
from sqlalchemy import Connection, Table, insert, select

from node import keyholders
from node.identity import load_signing_key
from node.ingest.bulk import chunks
from node.ingest.errors import IngestError
from node.keyholders import KeyholderLink, SectorConfig
from node.settings import NodeSettings
from node.storage.models import Admission, Person, SectorPseudonym
from protocol import oprf
from protocol.sector import (
    EVALUATE,
    EVALUATED,
    MAX_BATCH,
    EvaluateRequest,
    EvaluateResponse,
    oprf_input,
    stored_value,
)
from protocol.signing import (
    Envelope,
    SignatureError,
    SigningKey,
    public_key_from_text,
    sign,
    verify_once,
)

log = logging.getLogger("publieksdata.node.sector")
SECTOR = cast(Table, SectorPseudonym.__table__)
QUERY_CHUNK = 2_000


class SectorUnavailable(IngestError):
    """Too few key holders answered; nothing was imported. The message is safe to show."""


ClientFor = Callable[[KeyholderLink], httpx.Client]
Probes = list[tuple[int, int]]  # (position in the batch, scalar s of the probe s·G)
PROBES = 4  # spot checks per batch
_random = secrets.SystemRandom()


def default_client(link: KeyholderLink) -> httpx.Client:
    return httpx.Client(base_url=link.url, timeout=httpx.Timeout(120.0, connect=10.0))


class SectorPseudonymiser:
    def __init__(
        self,
        config: SectorConfig,
        key: SigningKey,
        *,
        kind: str = "email",
        client_for: ClientFor = default_client,
        batch: int = MAX_BATCH - PROBES,
    ) -> None:
        if len(config.links) < config.threshold:
            raise SectorUnavailable(
                f"the node is enrolled with {len(config.links)} key holder(s) but the sector "
                f"pseudonym needs {config.threshold}; enrol with more "
                "('publieksdata node keyholders join'), or remove the key holders to import "
                "without sector pseudonyms"
            )
        self.config = config
        self.key = key
        self.kind = kind
        # Room for the probes within every holder's batch limit.
        self.batch = max(1, min(batch, *(link.max_batch - PROBES for link in config.links)))
        self._client_for = client_for
        self._clients: dict[str, httpx.Client] = {}
        # The order in which holders are asked; one that failed moves to the back, so that a
        # holder that is down costs one timeout per import, not one per batch.
        self._order = list(config.links)
        self.requests = 0

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> SectorPseudonymiser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self, link: KeyholderLink) -> httpx.Client:
        client = self._clients.get(link.url)
        if client is None:
            client = self._clients[link.url] = self._client_for(link)
        return client

    def _ask(
        self, link: KeyholderLink, year: int, blinded: Sequence[bytes], probes: Probes
    ) -> list[bytes]:
        """One holder's evaluations of ``blinded``, with the probes checked and taken out;
        raises httpx.HTTPError or ValueError."""
        request = EvaluateRequest(
            key_set=self.config.key_set, year=year, elements=tuple(b.hex() for b in blinded)
        )
        envelope = sign(EVALUATE, request.model_dump(mode="json"), self.key)
        response = self._client(link).post(
            "/v1/evaluate",
            content=envelope.model_dump_json().encode("utf-8"),
            headers={"content-type": "application/json"},
        )
        if response.status_code != 200:
            try:
                detail = str(response.json().get("detail") or response.json().get("title"))
            except ValueError:
                detail = f"HTTP {response.status_code}"
            raise ValueError(detail)
        try:
            answer = Envelope.model_validate_json(response.content)
            payload = verify_once(answer, EVALUATED, public_key_from_text(link.public_key))
            result = EvaluateResponse.model_validate(payload)
        except (ValidationError, SignatureError) as exc:
            raise ValueError(f"its answer is not validly signed: {exc}") from None
        if (
            result.request != envelope.nonce
            or result.key_set != self.config.key_set
            or result.index != link.index
            or len(result.elements) != len(blinded)
        ):
            raise ValueError("its answer does not answer this request")
        evaluated = [bytes.fromhex(e) for e in result.elements]
        share = bytes.fromhex(link.public_share)
        for position, scalar in probes:
            if evaluated[position] != oprf.multiply(scalar, share):
                raise ValueError(
                    "it answered with another key than its public share from the ceremony; its "
                    "answers are not used (tell its operator)"
                )
        skip = {position for position, _ in probes}
        return [e for n, e in enumerate(evaluated) if n not in skip]

    def _evaluate(self, year: int, blinded: Sequence[bytes]) -> list[tuple[int, list[bytes]]]:
        """Evaluations from ``t`` holders, asked at once; the next holder replaces one that
        fails. Raises SectorUnavailable when fewer than ``t`` answer.

        Every batch carries :data:`PROBES` spot checks at secret random places: elements s·G
        for random s, which a holder cannot tell from blinded inputs (both are uniformly random
        elements), and whose right answer s·K_i the node knows from the holder's public share
        K_i = k_i·G. A holder that answers a share of the elements with another key is caught
        with the probability that a probe falls among them, batch after batch."""
        t = self.config.threshold
        mixed = list(blinded)
        probes: Probes = []
        for _ in range(PROBES):
            scalar = oprf.random_scalar()
            position = _random.randrange(len(mixed) + 1)
            mixed.insert(position, oprf.public_element(scalar))
            probes = [(p + 1 if p >= position else p, s) for p, s in probes] + [(position, scalar)]
        blinded = mixed
        pending = list(self._order)
        got: list[tuple[int, list[bytes]]] = []
        failures: list[str] = []
        with ThreadPoolExecutor(max_workers=t) as pool:
            while len(got) < t and pending:
                wave, pending = pending[: t - len(got)], pending[t - len(got) :]
                futures = [
                    (link, pool.submit(self._ask, link, year, blinded, probes)) for link in wave
                ]
                for link, future in futures:
                    try:
                        got.append((link.index, future.result()))
                        self.requests += 1
                    except (httpx.HTTPError, ValueError) as exc:
                        reason = str(exc) or type(exc).__name__
                        failures.append(f"{link.name} ({link.url}): {reason}")
                        self._order.remove(link)
                        self._order.append(link)
        if len(got) < t:
            raise SectorUnavailable(
                f"the sector pseudonym needs {t} of {self.config.holders} key holders, but only "
                f"{len(got)} answered; nothing was imported. " + "; ".join(failures)
            )
        return got

    def values(self, identifiers: Sequence[str], year: int) -> list[str]:
        """The stored values of normalised ``identifiers`` for ``year``, in order."""
        out: list[str] = []
        t = self.config.threshold
        for start in range(0, len(identifiers), self.batch):
            inputs = [
                oprf_input(i, year, self.kind) for i in identifiers[start : start + self.batch]
            ]
            blinds = [oprf.blind(data) for data in inputs]
            answers = self._evaluate(year, [b for _, b in blinds])
            for n, (data, (r, _)) in enumerate(zip(inputs, blinds, strict=True)):
                evaluations = [(index, elements[n]) for index, elements in answers]
                output = oprf.combine_and_finalize(data, r, evaluations, t)
                out.append(stored_value(output))
        return out


def sector_pseudonymiser(settings: NodeSettings, kind: str) -> SectorPseudonymiser | None:
    """The import's sector step when the node is enrolled with key holders, else None."""
    config = keyholders.load(settings.home)
    if config is None:
        return None
    return SectorPseudonymiser(config, load_signing_key(settings.signing_key_path), kind=kind)


def attach(
    conn: Connection, identifiers: Mapping[str, str], pseudonymiser: SectorPseudonymiser
) -> int:
    """Give every person of ``identifiers`` (local pseudonym -> normalised identifier) a sector
    value for each year in which they have an admission and none yet. Returns how many."""
    by_person: dict[int, str] = {}
    keys = list(identifiers)
    for part in chunks(keys, QUERY_CHUNK):
        for person_id, pseudonym in conn.execute(
            select(Person.id, Person.pseudonym).where(Person.pseudonym.in_(part))
        ):
            by_person[person_id] = identifiers[pseudonym]
    wanted: dict[int, list[int]] = defaultdict(list)  # year -> person ids
    for part in chunks(list(by_person), QUERY_CHUNK):
        have = {
            (person_id, year)
            for person_id, year in conn.execute(
                select(SectorPseudonym.person_id, SectorPseudonym.year).where(
                    SectorPseudonym.person_id.in_(part)
                )
            )
        }
        years = conn.execute(
            select(Admission.person_id, Admission.event_year)
            .where(Admission.person_id.in_(part))
            .distinct()
        )
        for person_id, year_text in years:
            year = int(year_text)
            if (person_id, year) not in have:
                wanted[year].append(person_id)
    added = 0
    for year in sorted(wanted):
        persons = sorted(wanted[year])
        values = pseudonymiser.values([by_person[p] for p in persons], year)
        rows = [
            {"person_id": p, "year": year, "value": v} for p, v in zip(persons, values, strict=True)
        ]
        for part in chunks(rows, QUERY_CHUNK):
            conn.execute(insert(SECTOR), part)
        added += len(rows)
    log.info("sector pseudonyms: %d (person, year) values added", added)
    return added
