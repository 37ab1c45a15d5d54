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

InstitutionKind = Literal["theatre", "museum", "cinema", "festival", "library"]
KINDS: tuple[InstitutionKind, ...] = ("theatre", "museum", "cinema", "festival", "library")
_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class KindModel:
    venue: str
    home_city: str
    home_pc4: tuple[int, int]
    local_share: float
    artforms: tuple[tuple[str, float], ...]
    months: tuple[float, ...]
    weekdays: tuple[float, ...]
    start_times: tuple[str, ...]
    halls: tuple[tuple[str, int], ...]
    tickets_per_event: int
    price_euros: tuple[float, float]
    price_types: tuple[tuple[str, float], ...]
    channels: tuple[tuple[str, float], ...]
    order_sizes: tuple[tuple[int, float], ...]
    same_day_share: float
    lead_median_days: float
    lead_sigma: float
    lead_max_days: int
    age_mean: float
    age_sd: float
    propensity_sigma: float
    titles: tuple[str, ...]
    free_share: float = 0.0
    pass_type: str | None = None
    window: tuple[tuple[int, int], tuple[int, int]] | None = None
    runs: int = 4


MODELS: dict[str, KindModel] = {
    "theatre": KindModel(
        venue="Stadsschouwburg Voorbeeldstad", home_city="Utrecht", home_pc4=(3511, 3585),
        local_share=0.68,
        artforms=(("theatre", 0.34), ("musical_opera", 0.14), ("dance", 0.1), ("cabaret", 0.18),
                  ("classical_music", 0.08), ("popular_music", 0.08), ("youth", 0.08)),
        months=(0.9, 1.0, 1.1, 1.0, 0.8, 0.5, 0.03, 0.12, 0.9, 1.1, 1.2, 1.1),
        weekdays=(0.25, 0.7, 0.9, 1.0, 1.3, 1.4, 0.6),
        start_times=("20:15", "20:15", "20:15", "20:00", "19:30", "14:30"),
        halls=(("Grote zaal", 900), ("Kleine zaal", 260), ("Studio", 120)),
        tickets_per_event=350, price_euros=(17.5, 47.5),
        price_types=(("regular", 0.55), ("reduced", 0.11), ("youth_cjp", 0.06),
                     ("uitpas_kansen", 0.02), ("member_subscription", 0.13),
                     ("group_school", 0.05), ("complimentary", 0.04), ("other", 0.04)),
        channels=(("online", 0.66), ("box_office", 0.14), ("phone", 0.1), ("reseller", 0.1)),
        order_sizes=((1, 0.25), (2, 0.55), (3, 0.08), (4, 0.1), (6, 0.02)),
        same_day_share=0.05, lead_median_days=24, lead_sigma=1.1, lead_max_days=330,
        age_mean=54, age_sd=15, propensity_sigma=1.25,
        titles=("Hamlet", "De Gebroeders", "Kabaal in de Keuken", "Ménage à trois", "Zwanenmeer",
                "Het Achterhuis", "Café Noir", "De Vliegende Hollander", "Oorlog en Vrede",
                "Zoë zingt", "Lang Leve de Koningin", "Faust", "Pinokkio", "Nachtwacht",
                "De Storm", "Tijl Uilenspiegel", "Carmen", "Wachten op Godot"),
    ),  # fmt: skip
    "museum": KindModel(
        venue="Museum Voorbeeld", home_city="Amsterdam", home_pc4=(1011, 1109),
        local_share=0.38,
        artforms=(("visual_arts", 0.6), ("heritage", 0.3), ("science_nature", 0.1)),
        months=(0.7, 0.85, 0.8, 1.05, 1.1, 0.9, 1.3, 1.4, 0.9, 1.05, 0.8, 1.0),
        weekdays=(0.45, 0.8, 0.95, 0.9, 1.0, 1.5, 1.6),
        start_times=("10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"),
        halls=(("Tijdslot", 150),),
        tickets_per_event=60, price_euros=(15.0, 22.5),
        price_types=(("regular", 0.42), ("museumkaart", 0.3), ("reduced", 0.06),
                     ("youth_cjp", 0.04), ("uitpas_kansen", 0.02), ("group_school", 0.07),
                     ("member_subscription", 0.03), ("complimentary", 0.04),
                     ("other", 0.02)),
        channels=(("online", 0.62), ("box_office", 0.33), ("reseller", 0.05)),
        order_sizes=((1, 0.35), (2, 0.4), (3, 0.1), (4, 0.12), (5, 0.03)),
        same_day_share=0.4, lead_median_days=4, lead_sigma=1.0, lead_max_days=120,
        age_mean=46, age_sd=18, propensity_sigma=1.1, pass_type="museumkaart",
        titles=("Licht en Schaduw", "De Gouden Eeuw", "Van Gogh tot Mondriaan", "Oer",
                "Mensen van de Zee", "Kleur!", "Het Verborgen Atelier", "Stad in Beweging"),
        runs=60,
    ),  # fmt: skip
    "cinema": KindModel(
        venue="Filmhuis Voorbeeld", home_city="Rotterdam", home_pc4=(3011, 3089),
        local_share=0.86,
        artforms=(("film", 1.0),),
        months=(1.15, 1.05, 0.95, 0.9, 0.8, 0.7, 0.85, 0.9, 0.85, 1.0, 1.05, 1.2),
        weekdays=(0.55, 0.75, 0.85, 0.9, 1.35, 1.7, 1.5),
        start_times=("13:30", "16:00", "19:00", "19:15", "21:30", "21:45"),
        halls=(("Zaal 1", 240), ("Zaal 2", 120), ("Zaal 3", 70)),
        tickets_per_event=45, price_euros=(10.5, 13.5),
        price_types=(("regular", 0.52), ("cineville", 0.28), ("reduced", 0.08),
                     ("youth_cjp", 0.05), ("uitpas_kansen", 0.01),
                     ("member_subscription", 0.02), ("group_school", 0.01),
                     ("complimentary", 0.03)),
        channels=(("online", 0.6), ("box_office", 0.3), ("pass_app", 0.1)),
        order_sizes=((1, 0.45), (2, 0.45), (3, 0.05), (4, 0.05)),
        same_day_share=0.45, lead_median_days=2, lead_sigma=0.9, lead_max_days=45,
        age_mean=34, age_sd=13, propensity_sigma=1.6, pass_type="cineville",
        titles=("Stille Wateren", "De Laatste Zomer", "Noorderlicht", "Amélie revisited",
                "Polderkoorts", "Het Verloren Land", "Zomerregen", "De Uitvinding",
                "Achter de Duinen", "Een Nieuwe Dag", "Straatkinderen", "Ijsvogel"),
        runs=25,
    ),  # fmt: skip
    "festival": KindModel(
        venue="Festivalterrein Voorbeeldpark", home_city="Nijmegen", home_pc4=(6511, 6546),
        local_share=0.32,
        artforms=(("multidisciplinary", 0.45), ("popular_music", 0.4), ("theatre", 0.15)),
        months=(1.0,) * 12,
        weekdays=(0.6, 0.6, 0.7, 0.8, 1.3, 1.6, 1.4),
        start_times=("14:00", "16:30", "19:00", "21:00", "22:30"),
        halls=(("Hoofdpodium", 5000), ("Tent", 1200), ("Bospodium", 400)),
        tickets_per_event=600, price_euros=(29.5, 64.5),
        price_types=(("regular", 0.74), ("reduced", 0.1), ("youth_cjp", 0.05),
                     ("member_subscription", 0.02), ("group_school", 0.02),
                     ("complimentary", 0.07)),
        channels=(("online", 0.9), ("reseller", 0.08), ("box_office", 0.02)),
        order_sizes=((1, 0.3), (2, 0.45), (3, 0.1), (4, 0.15)),
        same_day_share=0.03, lead_median_days=55, lead_sigma=0.9, lead_max_days=200,
        age_mean=29, age_sd=9, propensity_sigma=0.7,
        titles=("De Dijk", "Zuiderlicht", "The Voorbeelds", "Koor van Honderd", "Bliksem",
                "Nachtegaal", "Echo & Eb", "Muziek uit de Polder", "Straattheater Parade"),
        window=((7, 9), (7, 27)), runs=2,
    ),  # fmt: skip
    "library": KindModel(
        venue="Bibliotheek Voorbeeld", home_city="Zwolle", home_pc4=(8011, 8043),
        local_share=0.93,
        artforms=(("literature", 0.55), ("youth", 0.35), ("science_nature", 0.1)),
        months=(1.0, 1.05, 1.1, 1.0, 0.95, 0.8, 0.45, 0.5, 1.0, 1.1, 1.1, 0.9),
        weekdays=(0.8, 1.0, 1.3, 1.0, 0.9, 1.2, 0.15),
        start_times=("10:30", "14:00", "15:30", "19:30", "20:00"),
        halls=(("Leeszaal", 80), ("Kinderhoek", 40), ("Theaterzaal", 150)),
        tickets_per_event=35, price_euros=(0.0, 7.5),
        price_types=(("regular", 0.45), ("member_subscription", 0.35),
                     ("uitpas_kansen", 0.05), ("group_school", 0.1), ("complimentary", 0.05)),
        channels=(("online", 0.45), ("box_office", 0.55)),
        order_sizes=((1, 0.5), (2, 0.3), (3, 0.12), (4, 0.08)),
        same_day_share=0.15, lead_median_days=8, lead_sigma=0.9, lead_max_days=60,
        age_mean=45, age_sd=17, propensity_sigma=1.2, free_share=0.55,
        titles=("Schrijver aan het woord", "Voorleesuur", "Digicafé", "Leesclub",
                "Poëzieavond", "Taalcafé", "Wetenschap voor kids", "Boekpresentatie"),
    ),  # fmt: skip
}

PRICE_FACTORS = {
    "regular": 1.0, "reduced": 0.85, "youth_cjp": 0.6, "museumkaart": 0.0, "cineville": 0.0,
    "uitpas_kansen": 0.25, "member_subscription": 0.8, "group_school": 0.65,
    "complimentary": 0.0, "other": 0.9,
}  # fmt: skip
FIRST_NAMES = ("Anna", "Daan", "Zoë", "José", "Anaïs", "Noël", "Fleur", "Bram", "Chloë", "Sem",
               "Renée", "Mohammed", "Eva", "Thijs", "Inès", "Lotte", "Ömer", "Saar")  # fmt: skip
LAST_NAMES = ("Voorbeeld", "de Proef", "van Test", "Fictief", "Verzonnen", "Nepman",
              "ter Oefening", "Zonderbestaan")  # fmt: skip
COMPANIES = ("Toneelgroep Voorbeeld", "Compagnie Fictief", "Het Proefgezelschap",
             "Ensemble Nergens", "Collectief Verzonnen", "De Testers")  # fmt: skip
CITIES = ("Voorbeeldstad", "Testdorp", "Proefwijk", "Nergenshuizen")
SEGMENT_WEIGHTS = (0.06, 0.09, 0.12, 0.1, 0.08, 0.11, 0.09, 0.1, 0.08, 0.09, 0.08)
SEGMENT_CUMULATIVE = tuple(accumulate(SEGMENT_WEIGHTS))
_LETTERS = "ABCDEGHJKLMNPRTVWXZ"


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
        self.propensity = array("d", (min(math.exp(sigma * gauss(0, 1)), cap)
                                      for _ in range(self.pool)))  # fmt: skip
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
            events.append(EventPlan(number, datetime(day.year, day.month, day.day, hour, minute),
                                    title, f"P{production_no + 1:05d} {title}", artform, hall,
                                    capacity, free, price))  # fmt: skip
        # Tickets per event: by hall size, busy days and a random popularity, summing to rows.
        demand = [e.capacity ** 0.5 * weights[i] * rng.lognormvariate(0, 0.45)
                  for e, i in zip(events, chosen, strict=True)]  # fmt: skip
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
            letters = _LETTERS[(g >> 40) % len(_LETTERS)] + _LETTERS[(g >> 48) % len(_LETTERS)]
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
                elif m.pass_type and propensity[person] > self.pass_threshold and random_() < 0.8:
                    price_type = m.pass_type
                else:
                    price_type = types[bisect_(type_cum, random_() * type_cum[-1])]
                if random_() < m.same_day_share:
                    lead = 0
                else:
                    lead = min(m.lead_max_days, 1 + int(lognorm(math.log(m.lead_median_days),
                                                                 m.lead_sigma)))  # fmt: skip
                minutes = int(random_() * 600) + 20 if lead == 0 else int(random_() * 960) + 420
                if lead == 0:
                    ordered = event.start - timedelta(minutes=min(minutes, event.start.hour * 60))
                else:
                    ordered = datetime.combine(event.start.date() - timedelta(days=lead),
                                               datetime.min.time()) + timedelta(minutes=minutes)
                roll = random_()
                status = "sold" if roll < 0.962 else "refunded" if roll < 0.987 else "cancelled"
                channel = channels[bisect_(channel_cum, random_() * channel_cum[-1])]
                factor = PRICE_FACTORS[price_type]
                price = 0 if event.is_free else int(round(event.price_cents * factor / 50)) * 50
                yield Order(number, event, person, size, ordered, status, channel, price_type,
                            price)  # fmt: skip
