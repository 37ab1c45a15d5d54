"""A synthetic audience for one institution: events, visitors and orders, for test data and
benchmarks. Nothing here is real; every name, number and address is made up.

The model aims at plausible aggregate patterns, not at any real institution:

* seasonality per institution type: a theatre season from September to June with a summer
  dip; a museum steady with holiday peaks; a cinema busiest in winter and at weekends; a
  festival packed into a few summer weeks; a library steady with a summer dip;
* a heavy-tailed number of visits per person: each person has a log-normal propensity to
  visit, so most people come once and a few come fifty times or more (pass holders);
* booking lead times, order sizes, price types, channels and ages per institution type;
* visitors from the institution's home city (a range of PC4 areas) plus a national spread.

All randomness comes from one ``random.Random(seed)`` (and a hash of the person number for a
person's fixed attributes), so the same arguments give the same audience, byte for byte.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Literal

from node.ingest.kinds import (
    CITIES,
    COMPANIES,
    FIRST_NAMES,
    LAST_NAMES,
    MODELS,
    POSTCODE_LETTERS,
    PRICE_FACTORS,
    SEGMENT_CUMULATIVE,
)

InstitutionKind = Literal["theatre", "museum", "cinema", "festival", "library"]
KINDS: tuple[InstitutionKind, ...] = ("theatre", "museum", "cinema", "festival", "library")
_MASK = (1 << 64) - 1


@dataclass(slots=True)
class EventPlan:
    number: int
    start: datetime
    title: str
    production: str
    artform: str
    hall: str
    capacity: int
    is_free: bool
    price_cents: int
    tickets: int = 0


@dataclass(frozen=True, slots=True)
class PersonInfo:
    number: int
    customer_number: str
    email: str
    first_name: str
    last_name: str
    phone: str
    street: str
    postcode: str
    city: str
    birth: date | None
    segment: int | None


@dataclass(frozen=True, slots=True)
class Order:
    number: int
    event: EventPlan
    person: int
    tickets: int
    ordered_at: datetime
    status: str
    channel: str
    price_type: str
    price_cents: int


def mix64(value: int) -> int:
    """SplitMix64: a fast, well-spread hash of an integer (not for security)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


class Audience:
    """The synthetic institution: its events for one year and a pool of possible visitors."""

    def __init__(self, kind: InstitutionKind, rows: int, seed: int, year: int) -> None:
        self.kind = kind
        self.model = MODELS[kind]
        self.rows = rows
        self.year = year
        self.rng = random.Random(seed)
        self.salt = mix64(seed ^ 0x5EED)
        self.events = self._plan_events()
        orders_expected = rows / self._mean_order_size()
        self.pool = max(10, int(orders_expected * 1.15))
        sigma = self.model.propensity_sigma
        cap = math.exp(3.2 * sigma)
        gauss = self.rng.gauss
        self.propensity = array(
            "d", (min(math.exp(sigma * gauss(0, 1)), cap) for _ in range(self.pool))
        )
        self.cumulative = array("d", accumulate(self.propensity))
        self.pass_threshold = math.exp(0.85 * sigma)

    def _mean_order_size(self) -> float:
        sizes = self.model.order_sizes
        return sum(s * w for s, w in sizes) / sum(w for _, w in sizes)

    def _days(self) -> tuple[list[date], list[float]]:
        m = self.model
        days, weights = [], []
        day = date(self.year, 1, 1)
        while day.year == self.year:
            weight = m.months[day.month - 1] * m.weekdays[day.weekday()]
            if m.window is not None:
                (m1, d1), (m2, d2) = m.window
                weight *= date(self.year, m1, d1) <= day <= date(self.year, m2, d2)
            if weight > 0:
                days.append(day)
                weights.append(weight)
            day += timedelta(days=1)
        return days, weights

    def _plan_events(self) -> list[EventPlan]:
        m, rng = self.model, self.rng
        count = max(round(self.rows / m.tickets_per_event), min(self.rows // 8, 150), 1)
        days, weights = self._days()
        chosen = sorted(rng.choices(range(len(days)), weights=weights, k=count))
        titles = m.titles
        productions = max(1, count // m.runs)
        events = []
        for number, index in enumerate(chosen, start=1):
            day = days[index]
            hour, minute = map(int, rng.choice(m.start_times).split(":"))
            production_no = min(productions - 1, (number - 1) * productions // count)
            title = titles[production_no % len(titles)]
            cycle = production_no // len(titles)
            if cycle:
                title = f"{title} ({COMPANIES[(cycle - 1) % len(COMPANIES)]})"
                if cycle > len(COMPANIES):
                    title += f" {cycle // len(COMPANIES) + 1}"
            prod_rng = random.Random(mix64(self.salt ^ production_no))
            artform = _pick(prod_rng, m.artforms)
            hall, capacity = m.halls[prod_rng.randrange(len(m.halls))]
            if self.kind == "museum":
                hall = f"{hall} {hour:02d}:{minute:02d}"
            free = prod_rng.random() < m.free_share
            low, high = m.price_euros
            price = 0 if free else round((low + (high - low) * prod_rng.random()) * 2) * 50
            events.append(
                EventPlan(
                    number,
                    datetime(day.year, day.month, day.day, hour, minute),
                    title,
                    f"P{production_no + 1:05d} {title}",
                    artform,
                    hall,
                    capacity,
                    free,
                    price,
                )
            )
        # Tickets per event: by hall size, busy days and a random popularity, summing to rows.
        demand = [
            e.capacity**0.5 * weights[i] * rng.lognormvariate(0, 0.45)
            for e, i in zip(events, chosen, strict=True)
        ]
        total = sum(demand)
        shares = [self.rows * d / total for d in demand]
        counts = [int(s) for s in shares]
        short = self.rows - sum(counts)
        by_remainder = sorted(range(len(events)), key=lambda i: counts[i] - shares[i])
        for i in by_remainder[:short]:
            counts[i] += 1
        for event, tickets in zip(events, counts, strict=True):
            event.tickets = tickets
            event.capacity = max(event.capacity, tickets)
        return events

    def person(self, number: int) -> PersonInfo:
        """The fixed, made-up attributes of visitor ``number`` (the same on every visit)."""
        m = self.model
        h = mix64(self.salt ^ number)
        g = mix64(h)
        u1, u2 = ((h >> 11) + 1) / 2**53, (g >> 11) / 2**53
        age = m.age_mean + m.age_sd * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
        age = min(max(age, 16.0), 94.0)
        birth = None
        if h % 100 >= 18:
            birth = date(self.year - 1 - int(age), 1 + (g >> 8) % 12, 1 + (g >> 16) % 28)
        where = (h >> 20) % 1000
        if where < 20:
            postcode = ("B-2000", "50667", "1000 AB NL", "12AB 34")[(h >> 40) % 4]
        elif where < 45:
            postcode = ""
        else:
            lo, hi = m.home_pc4
            local = where < 45 + m.local_share * 955
            area = lo + (g >> 24) % (hi - lo + 1) if local else 1011 + (g >> 24) % 8980
            letters = (
                POSTCODE_LETTERS[(g >> 40) % len(POSTCODE_LETTERS)]
                + POSTCODE_LETTERS[(g >> 48) % len(POSTCODE_LETTERS)]
            )
            style = (h >> 50) % 10
            postcode = (
                f"{area}{letters}"
                if style < 3
                else f"{area} {letters.lower()}"
                if style == 3
                else f"{area} {letters}"
            )
        segment = None
        if (h >> 32) % 10 >= 3:
            pick = ((g >> 32) % 10_000) / 10_000 * SEGMENT_CUMULATIVE[-1]
            segment = min(1 + bisect(SEGMENT_CUMULATIVE, pick), 11)
        customer = str(100_000 + number)
        return PersonInfo(
            number=number,
            customer_number=customer if h % 20 else "",
            email=f"klant{customer}@voorbeeld.nl",
            first_name=FIRST_NAMES[(h >> 4) % len(FIRST_NAMES)],
            last_name=LAST_NAMES[(g >> 4) % len(LAST_NAMES)],
            phone=f"06-0000{(h >> 8) % 10_000:04d}",
            street=f"Voorbeeldstraat {1 + (g >> 12) % 200}",
            postcode=postcode,
            city=m.home_city if where >= 45 and where < 45 + m.local_share * 955 else CITIES[g % 4],
            birth=birth,
            segment=segment,
        )

    def orders(self) -> Iterator[Order]:
        """Every order, event by event in date order, each for one buyer."""
        m, rng = self.model, self.rng
        random_, lognorm, bisect_ = rng.random, rng.lognormvariate, bisect
        cumulative, propensity = self.cumulative, self.propensity
        total_weight = cumulative[-1]
        last = self.pool - 1
        sizes = [s for s, _ in m.order_sizes]
        size_cum = list(accumulate(w for _, w in m.order_sizes))
        types = [t for t, _ in m.price_types]
        type_cum = list(accumulate(w for _, w in m.price_types))
        channels = [c for c, _ in m.channels]
        channel_cum = list(accumulate(w for _, w in m.channels))
        number = 0
        for event in self.events:
            remaining = event.tickets
            while remaining > 0:
                number += 1
                size = sizes[bisect_(size_cum, random_() * size_cum[-1])]
                if random_() < 0.004:
                    size = 12 + int(random_() * 20)  # a school class or a group
                size = min(size, remaining)
                remaining -= size
                person = min(bisect_(cumulative, random_() * total_weight), last)
                if size >= 12:
                    price_type = "group_school"
                elif m.card and propensity[person] > self.pass_threshold and random_() < 0.8:
                    price_type = m.card
                else:
                    price_type = types[bisect_(type_cum, random_() * type_cum[-1])]
                if random_() < m.same_day_share:
                    lead = 0
                else:
                    lead = min(
                        m.lead_max_days,
                        1 + int(lognorm(math.log(m.lead_median_days), m.lead_sigma)),
                    )
                minutes = int(random_() * 600) + 20 if lead == 0 else int(random_() * 960) + 420
                if lead == 0:
                    ordered = event.start - timedelta(minutes=min(minutes, event.start.hour * 60))
                else:
                    ordered = datetime.combine(
                        event.start.date() - timedelta(days=lead), datetime.min.time()
                    ) + timedelta(minutes=minutes)
                roll = random_()
                status = "sold" if roll < 0.962 else "refunded" if roll < 0.987 else "cancelled"
                channel = channels[bisect_(channel_cum, random_() * channel_cum[-1])]
                factor = PRICE_FACTORS[price_type]
                price = 0 if event.is_free else round(event.price_cents * factor / 50) * 50
                yield Order(
                    number, event, person, size, ordered, status, channel, price_type, price
                )
