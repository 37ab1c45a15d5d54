"""The institution types the synthetic audience can model, and their made-up parameters.

Each :class:`KindModel` sets one type's seasonality (weights per month and weekday), programme
(halls, start times, tickets per event, prices), audience (home PC4 range and local share, age
mix, visit propensity) and sales (price types, channels, order sizes, booking lead times). The
figures are plausible for the Dutch sector, not taken from any real institution.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate


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
    card: str | None = None
    window: tuple[tuple[int, int], tuple[int, int]] | None = None
    runs: int = 4


# fmt: off
MODELS: dict[str, KindModel] = {
    "theatre": KindModel(
        venue="Stadsschouwburg Voorbeeldstad", home_city="Utrecht", home_pc4=(3511, 3585),
        local_share=0.68,
        artforms=(
            ("theatre", 0.34), ("musical_opera", 0.14), ("dance", 0.1), ("cabaret", 0.18),
            ("classical_music", 0.08), ("popular_music", 0.08), ("youth", 0.08),
        ),
        months=(0.9, 1.0, 1.1, 1.0, 0.8, 0.5, 0.03, 0.12, 0.9, 1.1, 1.2, 1.1),
        weekdays=(0.25, 0.7, 0.9, 1.0, 1.3, 1.4, 0.6),
        start_times=("20:15", "20:15", "20:15", "20:00", "19:30", "14:30"),
        halls=(("Grote zaal", 900), ("Kleine zaal", 260), ("Studio", 120)), tickets_per_event=350,
        price_euros=(17.5, 47.5),
        price_types=(
            ("regular", 0.55), ("reduced", 0.11), ("youth_cjp", 0.06), ("uitpas_kansen", 0.02),
            ("member_subscription", 0.13), ("group_school", 0.05), ("complimentary", 0.04),
            ("other", 0.04),
        ),
        channels=(("online", 0.66), ("box_office", 0.14), ("phone", 0.1), ("reseller", 0.1)),
        order_sizes=((1, 0.25), (2, 0.55), (3, 0.08), (4, 0.1), (6, 0.02)), same_day_share=0.05,
        lead_median_days=24, lead_sigma=1.1, lead_max_days=330, age_mean=54, age_sd=15,
        propensity_sigma=1.25,
        titles=(
            "Hamlet", "De Gebroeders", "Kabaal in de Keuken", "Ménage à trois", "Zwanenmeer",
            "Het Achterhuis", "Café Noir", "De Vliegende Hollander", "Oorlog en Vrede", "Zoë zingt",
            "Lang Leve de Koningin", "Faust", "Pinokkio", "Nachtwacht", "De Storm",
            "Tijl Uilenspiegel", "Carmen", "Wachten op Godot",
        ),
    ),
    "museum": KindModel(
        venue="Museum Voorbeeld", home_city="Amsterdam", home_pc4=(1011, 1109), local_share=0.38,
        artforms=(("visual_arts", 0.6), ("heritage", 0.3), ("science_nature", 0.1)),
        months=(0.7, 0.85, 0.8, 1.05, 1.1, 0.9, 1.3, 1.4, 0.9, 1.05, 0.8, 1.0),
        weekdays=(0.45, 0.8, 0.95, 0.9, 1.0, 1.5, 1.6),
        start_times=("10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"),
        halls=(("Tijdslot", 150),), tickets_per_event=60, price_euros=(15.0, 22.5),
        price_types=(
            ("regular", 0.42), ("museumkaart", 0.3), ("reduced", 0.06), ("youth_cjp", 0.04),
            ("uitpas_kansen", 0.02), ("group_school", 0.07), ("member_subscription", 0.03),
            ("complimentary", 0.04), ("other", 0.02),
        ),
        channels=(("online", 0.62), ("box_office", 0.33), ("reseller", 0.05)),
        order_sizes=((1, 0.35), (2, 0.4), (3, 0.1), (4, 0.12), (5, 0.03)), same_day_share=0.4,
        lead_median_days=4, lead_sigma=1.0, lead_max_days=120, age_mean=46, age_sd=18,
        propensity_sigma=1.1,
        titles=(
            "Licht en Schaduw", "De Gouden Eeuw", "Van Gogh tot Mondriaan", "Oer",
            "Mensen van de Zee", "Kleur!", "Het Verborgen Atelier", "Stad in Beweging",
        ),
        card="museumkaart", runs=60,
    ),
    "cinema": KindModel(
        venue="Filmhuis Voorbeeld", home_city="Rotterdam", home_pc4=(3011, 3089), local_share=0.86,
        artforms=(("film", 1.0),),
        months=(1.15, 1.05, 0.95, 0.9, 0.8, 0.7, 0.85, 0.9, 0.85, 1.0, 1.05, 1.2),
        weekdays=(0.55, 0.75, 0.85, 0.9, 1.35, 1.7, 1.5),
        start_times=("13:30", "16:00", "19:00", "19:15", "21:30", "21:45"),
        halls=(("Zaal 1", 240), ("Zaal 2", 120), ("Zaal 3", 70)), tickets_per_event=45,
        price_euros=(10.5, 13.5),
        price_types=(
            ("regular", 0.52), ("cineville", 0.28), ("reduced", 0.08), ("youth_cjp", 0.05),
            ("uitpas_kansen", 0.01), ("member_subscription", 0.02), ("group_school", 0.01),
            ("complimentary", 0.03),
        ),
        channels=(("online", 0.6), ("box_office", 0.3), ("pass_app", 0.1)),
        order_sizes=((1, 0.45), (2, 0.45), (3, 0.05), (4, 0.05)), same_day_share=0.45,
        lead_median_days=2, lead_sigma=0.9, lead_max_days=45, age_mean=34, age_sd=13,
        propensity_sigma=1.6,
        titles=(
            "Stille Wateren", "De Laatste Zomer", "Noorderlicht", "Amélie revisited",
            "Polderkoorts", "Het Verloren Land", "Zomerregen", "De Uitvinding", "Achter de Duinen",
            "Een Nieuwe Dag", "Straatkinderen", "Ijsvogel",
        ),
        card="cineville", runs=25,
    ),
    "festival": KindModel(
        venue="Festivalterrein Voorbeeldpark", home_city="Nijmegen", home_pc4=(6511, 6546),
        local_share=0.32,
        artforms=(("multidisciplinary", 0.45), ("popular_music", 0.4), ("theatre", 0.15)),
        months=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        weekdays=(0.6, 0.6, 0.7, 0.8, 1.3, 1.6, 1.4),
        start_times=("14:00", "16:30", "19:00", "21:00", "22:30"),
        halls=(("Hoofdpodium", 5000), ("Tent", 1200), ("Bospodium", 400)), tickets_per_event=600,
        price_euros=(29.5, 64.5),
        price_types=(
            ("regular", 0.74), ("reduced", 0.1), ("youth_cjp", 0.05), ("member_subscription", 0.02),
            ("group_school", 0.02), ("complimentary", 0.07),
        ),
        channels=(("online", 0.9), ("reseller", 0.08), ("box_office", 0.02)),
        order_sizes=((1, 0.3), (2, 0.45), (3, 0.1), (4, 0.15)), same_day_share=0.03,
        lead_median_days=55, lead_sigma=0.9, lead_max_days=200, age_mean=29, age_sd=9,
        propensity_sigma=0.7,
        titles=(
            "De Dijk", "Zuiderlicht", "The Voorbeelds", "Koor van Honderd", "Bliksem", "Nachtegaal",
            "Echo & Eb", "Muziek uit de Polder", "Straattheater Parade",
        ),
        window=((7, 9), (7, 27)), runs=2,
    ),
    "library": KindModel(
        venue="Bibliotheek Voorbeeld", home_city="Zwolle", home_pc4=(8011, 8043), local_share=0.93,
        artforms=(("literature", 0.55), ("youth", 0.35), ("science_nature", 0.1)),
        months=(1.0, 1.05, 1.1, 1.0, 0.95, 0.8, 0.45, 0.5, 1.0, 1.1, 1.1, 0.9),
        weekdays=(0.8, 1.0, 1.3, 1.0, 0.9, 1.2, 0.15),
        start_times=("10:30", "14:00", "15:30", "19:30", "20:00"),
        halls=(("Leeszaal", 80), ("Kinderhoek", 40), ("Theaterzaal", 150)), tickets_per_event=35,
        price_euros=(0.0, 7.5),
        price_types=(
            ("regular", 0.45), ("member_subscription", 0.35), ("uitpas_kansen", 0.05),
            ("group_school", 0.1), ("complimentary", 0.05),
        ),
        channels=(("online", 0.45), ("box_office", 0.55)),
        order_sizes=((1, 0.5), (2, 0.3), (3, 0.12), (4, 0.08)), same_day_share=0.15,
        lead_median_days=8, lead_sigma=0.9, lead_max_days=60, age_mean=45, age_sd=17,
        propensity_sigma=1.2,
        titles=(
            "Schrijver aan het woord", "Voorleesuur", "Digicafé", "Leesclub", "Poëzieavond",
            "Taalcafé", "Wetenschap voor kids", "Boekpresentatie",
        ),
        free_share=0.55,
    ),
}
# fmt: on

PRICE_FACTORS = {
    "regular": 1.0,
    "reduced": 0.85,
    "youth_cjp": 0.6,
    "museumkaart": 0.0,
    "cineville": 0.0,
    "uitpas_kansen": 0.25,
    "member_subscription": 0.8,
    "group_school": 0.65,
    "complimentary": 0.0,
    "other": 0.9,
}
FIRST_NAMES = (
    "Anna",
    "Daan",
    "Zoë",
    "José",
    "Anaïs",
    "Noël",
    "Fleur",
    "Bram",
    "Chloë",
    "Sem",
    "Renée",
    "Mohammed",
    "Eva",
    "Thijs",
    "Inès",
    "Lotte",
    "Ömer",
    "Saar",
)
LAST_NAMES = (
    "Voorbeeld",
    "de Proef",
    "van Test",
    "Fictief",
    "Verzonnen",
    "Nepman",
    "ter Oefening",
    "Zonderbestaan",
)
COMPANIES = (
    "Toneelgroep Voorbeeld",
    "Compagnie Fictief",
    "Het Proefgezelschap",
    "Ensemble Nergens",
    "Collectief Verzonnen",
    "De Testers",
)
CITIES = ("Voorbeeldstad", "Testdorp", "Proefwijk", "Nergenshuizen")
SEGMENT_WEIGHTS = (0.06, 0.09, 0.12, 0.1, 0.08, 0.11, 0.09, 0.1, 0.08, 0.09, 0.08)
SEGMENT_CUMULATIVE = tuple(accumulate(SEGMENT_WEIGHTS))
POSTCODE_LETTERS = "ABCDEGHJKLMNPRTVWXZ"
