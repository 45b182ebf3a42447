"""A synthetic creator population with a known truth, for tests, benchmarks and demos.

Each creator has a latent niche (what it really posts about), an audience shaped by that niche
and its country, a tier-typical engagement and price, and a latent quality (how well its posts
convert). About `fake_share` of the accounts are fakes that pose as niche creators: bought
followers, engagement bots or comment farms. On request, `pod_share` more are engagement pods
and `spike_share` more bought followers lately (a spike their follower history shows); these
are drawn from a second stream, so asking for none leaves a population exactly as it was.
Everything is drawn from `numpy.random` with the given seed, so a population is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt

from services.matching.domain.profiles import ProfileColumns
from shared.contract.events import MatchRequested, Niche, TargetAudience
from shared.contract.events.vocabulary import AGE_BUCKETS, DeliverableKind, Platform, Tier
from shared.contract.money import FxSnapshot, Money

# Each niche: the words its creators use. Neighbouring niches share a few words on purpose
# (fitness and nutrition both say "healthy"), so relevance is not trivially separable.
NICHES: Final[dict[str, tuple[str, ...]]] = {
    "baking": ("baking", "sourdough", "bread", "pastry", "oven", "flour", "cake", "dough",
               "recipes", "homemade", "croissant", "yeast", "kitchen"),
    "fitness": ("fitness", "workout", "gym", "strength", "training", "muscle", "cardio",
                "healthy", "squat", "lifting", "hiit", "coach", "protein"),
    "nutrition": ("nutrition", "healthy", "mealprep", "protein", "vegan", "diet", "salad",
                  "macros", "wholefood", "dietitian", "smoothie", "recipes", "plantbased"),
    "gaming": ("gaming", "gamer", "esports", "stream", "console", "rpg", "speedrun", "fps",
               "controller", "indie", "multiplayer", "twitch", "playthrough"),
    "travel": ("travel", "wanderlust", "backpacking", "flights", "hostel", "itinerary",
               "roadtrip", "beaches", "passport", "adventure", "explore", "hiking", "cities"),
    "beauty": ("beauty", "makeup", "skincare", "lipstick", "foundation", "serum", "glow",
               "cosmetics", "tutorial", "eyeliner", "routine", "haircare", "nails"),
    "fashion": ("fashion", "outfit", "style", "streetwear", "vintage", "thrift", "ootd",
                "designer", "sneakers", "wardrobe", "lookbook", "trends", "accessories"),
    "tech": ("tech", "gadgets", "smartphone", "laptop", "review", "unboxing", "software",
             "coding", "ai", "headphones", "setup", "apps", "hardware"),
    "parenting": ("parenting", "mom", "dad", "toddler", "baby", "family", "kids", "newborn",
                  "school", "bedtime", "playtime", "momlife", "homeschool"),
    "finance": ("finance", "investing", "stocks", "budget", "savings", "crypto", "money",
                "retirement", "etf", "frugal", "dividends", "debt", "wealth"),
    "pets": ("pets", "dog", "puppy", "cat", "kitten", "adoption", "training", "vet",
             "petcare", "rescue", "grooming", "doglife", "catlife"),
    "gardening": ("gardening", "plants", "garden", "seeds", "compost", "houseplants",
                  "vegetables", "soil", "harvest", "succulents", "organic", "greenhouse",
                  "homemade"),
}  # fmt: skip
NICHE_NAMES: Final[tuple[str, ...]] = tuple(NICHES)

GENERIC_WORDS: Final = (
    "daily", "life", "love", "sharing", "content", "creator", "new", "videos", "tips", "follow",
    "community", "weekly", "best", "my", "journey", "posts", "fun", "ideas", "favourite", "real",
)  # fmt: skip

# Age profile of each niche's audience (weights over AGE_BUCKETS) and its female share.
_AGE_PROFILE: Final[dict[str, tuple[float, ...]]] = {
    "gaming": (3, 8, 6, 2, 1, 0.5, 0.2),
    "parenting": (0.2, 2, 8, 6, 2, 0.8, 0.3),
    "finance": (0.2, 3, 7, 6, 3, 2, 1),
    "gardening": (0.2, 1, 3, 5, 5, 4, 3),
}
_DEFAULT_AGE_PROFILE: Final = (1, 6, 7, 4, 2, 1, 0.5)
_FEMALE_SHARE: Final[dict[str, float]] = {
    "beauty": 0.85, "fashion": 0.75, "parenting": 0.8, "gaming": 0.25, "tech": 0.3,
    "finance": 0.35, "fitness": 0.5, "baking": 0.7, "nutrition": 0.65,
}  # fmt: skip

# Country -> (weight in the population, language, local currency).
COUNTRIES: Final[dict[str, tuple[float, str, str]]] = {
    "US": (30, "en", "USD"), "GB": (9, "en", "GBP"), "CA": (5, "en", "CAD"),
    "AU": (4, "en", "AUD"), "IN": (8, "en", "INR"), "DE": (7, "de", "EUR"),
    "FR": (6, "fr", "EUR"), "ES": (5, "es", "EUR"), "IT": (4, "it", "EUR"),
    "NL": (2, "nl", "EUR"), "SE": (2, "sv", "SEK"), "BR": (8, "pt", "BRL"),
    "MX": (5, "es", "MXN"), "JP": (5, "ja", "JPY"),
}  # fmt: skip
_COUNTRY_CODES: Final = tuple(COUNTRIES)

# Units of each currency per US dollar, used to price rate cards and as a ready FX snapshot.
REFERENCE_RATES: Final[dict[str, Decimal]] = {
    "EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "CAD": Decimal("1.36"),
    "AUD": Decimal("1.52"), "INR": Decimal("83.1"), "SEK": Decimal("10.5"),
    "BRL": Decimal("5.05"), "MXN": Decimal("17.1"), "JPY": Decimal("150.2"),
}  # fmt: skip

_TIER_SHARES: Final = (0.45, 0.40, 0.12, 0.03)
_TIER_FOLLOWERS: Final = ((1_000, 10_000), (10_000, 100_000), (100_000, 1_000_000),
                          (1_000_000, 8_000_000))  # fmt: skip
_TIER_ENGAGEMENT: Final = (0.075, 0.04, 0.02, 0.0075)
_PLATFORM_SHARES: Final[dict[Platform, float]] = {
    "instagram": 0.45, "tiktok": 0.3, "youtube": 0.15, "twitch": 0.05, "x": 0.05,
}  # fmt: skip
FAKE_KINDS: Final = ("bought_followers", "engagement_bots", "comment_farm")


@dataclass(frozen=True)
class Population:
    """Generated profiles with their latent truth (same order as the profiles)."""

    profiles: ProfileColumns
    niche: npt.NDArray[np.int16]
    """Index into NICHE_NAMES of each creator's real niche."""
    is_fake: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.float32]
    """Latent conversion quality in [0, 1]: how well a creator's posts sell (0 for fakes)."""
    is_pod: npt.NDArray[np.bool_]
    """Engagement pods (also counted in is_fake)."""
    is_spike: npt.NDArray[np.bool_]
    """Bought followers in the last weeks (also counted in is_fake)."""
    earlier_followers: npt.NDArray[np.int64]
    """Followers two weeks before the profile: its previous profile event."""

    def __len__(self) -> int:
        return len(self.profiles)


def generate_population(
    count: int,
    *,
    seed: int,
    fake_share: float = 0.1,
    id_prefix: str = "cr",
    pod_share: float = 0.0,
    spike_share: float = 0.0,
) -> Population:
    """`count` creators with ids `<id_prefix>-<i>`; exactly round(count * fake_share) fakes,
    then round(count * pod_share) pods and round(count * spike_share) spikes among the rest."""
    rng = np.random.default_rng(seed)
    n_niches = len(NICHE_NAMES)
    niche = rng.integers(0, n_niches, count).astype(np.int16)
    second = ((niche + rng.integers(1, n_niches, count)) % n_niches).astype(np.int16)
    is_fake = np.zeros(count, dtype=bool)
    is_fake[rng.permutation(count)[: round(count * fake_share)]] = True

    tier = rng.choice(4, size=count, p=_TIER_SHARES)
    low = np.array([b[0] for b in _TIER_FOLLOWERS])[tier]
    high = np.array([b[1] for b in _TIER_FOLLOWERS])[tier]
    followers = np.exp(rng.uniform(np.log(low), np.log(high))).astype(np.int64)
    quality = np.clip(rng.beta(2.0, 2.0, count), 0.0, 1.0)
    # Better creators engage their audience better: the one visible trace of quality before
    # any deal has been tracked.
    engagement = (
        np.array(_TIER_ENGAGEMENT)[tier]
        * rng.lognormal(0.0, 0.25, count)
        * np.exp(0.8 * (quality - 0.5))
    )
    comment_ratio = rng.uniform(0.015, 0.06, count)
    share_ratio = rng.uniform(0.005, 0.03, count)
    posts = rng.integers(4, 25, count)
    views_ratio = rng.uniform(0.2, 0.7, count)

    # Fakes: their numbers betray them in different ways, their text does not.
    kind = rng.integers(0, len(FAKE_KINDS), count)
    bought = is_fake & (kind == 0)
    bots = is_fake & (kind == 1)
    farm = is_fake & (kind == 2)
    followers = np.where(bought, followers * rng.integers(15, 60, count), followers)
    engagement = np.where(bought, engagement / rng.uniform(30, 200, count), engagement)
    engagement = np.where(bots, engagement * rng.uniform(3, 6, count), engagement)
    comment_ratio = np.where(bots, rng.uniform(0.0005, 0.003, count), comment_ratio)
    comment_ratio = np.where(farm, rng.uniform(0.6, 2.5, count), comment_ratio)
    posts = np.where(farm, rng.integers(60, 200, count), posts)
    views_ratio = np.where(bought, rng.uniform(0.005, 0.03, count), views_ratio)

    # Pods and spikes: a second stream, so that the draws above stay those of old seeds.
    more = np.random.default_rng([seed, 1])
    honest = more.permutation(np.flatnonzero(~is_fake))
    n_pods, n_spikes = round(count * pod_share), round(count * spike_share)
    is_pod = np.zeros(count, dtype=bool)
    is_pod[honest[:n_pods]] = True
    is_spike = np.zeros(count, dtype=bool)
    is_spike[honest[n_pods : n_pods + n_spikes]] = True
    # A pod's members like and comment on every post (short comments, no shares), lifting
    # engagement well above the tier's real audiences but short of the implausible.
    engagement = np.where(is_pod, engagement * more.uniform(1.6, 2.6, count), engagement)
    comment_ratio = np.where(is_pod, more.uniform(0.12, 0.45, count), comment_ratio)
    share_ratio = np.where(is_pod, more.uniform(0.0, 0.002, count), share_ratio)
    earlier = (followers / more.uniform(1.0, 1.08, count)).astype(np.int64)
    # Bought followers like nothing: the same likes now spread over 3.5-6x the followers.
    jump = more.uniform(3.5, 6.0, count)
    engagement = np.where(is_spike, engagement / jump, engagement)
    views_ratio = np.where(is_spike, views_ratio / jump, views_ratio)
    followers = np.where(is_spike, (followers * jump).astype(np.int64), followers)
    is_fake = is_fake | is_pod | is_spike
    quality = np.where(is_fake, 0.0, quality)

    likes = followers * engagement / (1 + comment_ratio + share_ratio)
    country_idx = rng.choice(
        len(_COUNTRY_CODES), size=count, p=_normalised([w for w, _, _ in COUNTRIES.values()])
    )
    platforms = list(_PLATFORM_SHARES)
    platform_idx = rng.choice(len(platforms), size=count, p=_normalised(_PLATFORM_SHARES.values()))
    has_rate_card = rng.random(count) < 0.8
    price_per_thousand = rng.uniform(6.0, 18.0, count)

    columns = ProfileColumns(
        creator_id=[f"{id_prefix}-{i}" for i in range(count)],
        handle=[f"@{NICHE_NAMES[niche[i]]}.{id_prefix}.{i}" for i in range(count)],
        platform=[platforms[p] for p in platform_idx],
        followers=followers,
        avg_likes=np.round(likes, 1),
        avg_comments=np.round(likes * comment_ratio, 1),
        avg_shares=np.round(likes * share_ratio, 1),
        avg_views=np.round(followers * views_ratio, 1),
        posts_last_30d=posts.astype(np.int64),
        bio=[],
        topics=[],
        country=[_COUNTRY_CODES[c] for c in country_idx],
        language=[COUNTRIES[_COUNTRY_CODES[c]][1] for c in country_idx],
        audience_countries=[],
        audience_age=np.zeros((count, len(AGE_BUCKETS)), dtype=np.float32),
        audience_gender=np.zeros((count, 3), dtype=np.float32),
        rate_card=[],
        payout_currency=[COUNTRIES[_COUNTRY_CODES[c]][2] for c in country_idx],
    )
    _write_texts(columns, rng, niche, second)
    _write_audiences(columns, rng, niche, country_idx)
    _write_rate_cards(columns, followers, has_rate_card, price_per_thousand)
    return Population(
        columns, niche, is_fake, quality.astype(np.float32), is_pod, is_spike, earlier
    )


def _normalised(weights: object) -> npt.NDArray[np.float64]:
    values = np.array(list(weights), dtype=np.float64)  # type: ignore[call-overload]
    normalised: npt.NDArray[np.float64] = values / values.sum()
    return normalised


def _write_texts(
    columns: ProfileColumns,
    rng: np.random.Generator,
    niche: npt.NDArray[np.int16],
    second: npt.NDArray[np.int16],
) -> None:
    vocab = [NICHES[name] for name in NICHE_NAMES]
    own_counts = rng.integers(4, 9, len(niche))
    other_counts = rng.integers(0, 3, len(niche))
    generic_counts = rng.integers(3, 7, len(niche))
    topic_counts = rng.integers(2, 6, len(niche))
    for i in range(len(niche)):
        own = vocab[niche[i]]
        words = list(rng.choice(own, own_counts[i], replace=False))
        words += list(rng.choice(vocab[second[i]], other_counts[i], replace=False))
        words += list(rng.choice(GENERIC_WORDS, generic_counts[i], replace=False))
        rng.shuffle(words)
        columns.bio.append(" ".join(words))
        columns.topics.append(tuple(rng.choice(own, topic_counts[i], replace=False)))


def _write_audiences(
    columns: ProfileColumns,
    rng: np.random.Generator,
    niche: npt.NDArray[np.int16],
    country_idx: npt.NDArray[np.integer],
) -> None:
    count = len(niche)
    home_share = rng.uniform(0.35, 0.75, count)
    known = rng.uniform(0.85, 1.0, count)  # platforms do not attribute every follower
    others = rng.integers(1, 4, count)
    for i in range(count):
        home = _COUNTRY_CODES[country_idx[i]]
        rest = [c for c in _COUNTRY_CODES if c != home]
        picks = rng.choice(rest, others[i], replace=False)
        split = rng.dirichlet(np.ones(others[i])) * (known[i] - home_share[i])
        # Shares are cut (not rounded) to 4 decimals so they never sum past 1.
        shares = {home: _cut(home_share[i])}
        shares.update({str(c): _cut(s) for c, s in zip(picks, split, strict=True)})
        columns.audience_countries.append(shares)
        name = NICHE_NAMES[niche[i]]
        ages = rng.dirichlet(np.array(_AGE_PROFILE.get(name, _DEFAULT_AGE_PROFILE)) * 4)
        columns.audience_age[i] = np.floor(ages * 10_000) / 10_000
        female = _cut(np.clip(rng.normal(_FEMALE_SHARE.get(name, 0.55), 0.08), 0.02, 0.96))
        other = 0.02
        columns.audience_gender[i] = (female, _cut(1 - female - other), other)


def _cut(share: float) -> float:
    """`share` truncated to 4 decimals."""
    return math.floor(float(share) * 10_000) / 10_000


def _write_rate_cards(
    columns: ProfileColumns,
    followers: npt.NDArray[np.int64],
    has_rate_card: npt.NDArray[np.bool_],
    price_per_thousand: npt.NDArray[np.float64],
) -> None:
    for i in range(len(followers)):
        if not has_rate_card[i]:
            columns.rate_card.append({})
            continue
        currency = columns.payout_currency[i]
        usd = max(20.0, followers[i] / 1000 * price_per_thousand[i])
        post = Money.of(Decimal(str(round(usd, 2))) * REFERENCE_RATES.get(currency, 1), currency)
        card: dict[DeliverableKind, Money] = {"post": post, "story": post.times(Decimal("0.4"))}
        columns.rate_card.append(card)


def reference_fx(as_of: datetime, *, source: str = "synthetic") -> FxSnapshot:
    """An FX snapshot (base USD) with a rate for every currency the population uses."""
    return FxSnapshot(base="USD", rates=REFERENCE_RATES, as_of=as_of, source=source)


def niche_request(
    niche: str,
    *,
    request_id: str,
    campaign_id: str,
    seed: int,
    budget: Money | None = None,
    limit: int = 20,
    tiers: tuple[Tier, ...] = (),
    platforms: tuple[Platform, ...] = (),
    countries: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    brand_id: str = "brand-synthetic",
) -> MatchRequested:
    """A brand's request for creators of `niche`, worded with that niche's vocabulary."""
    rng = np.random.default_rng(seed)
    words = NICHES[niche]
    described = rng.choice(words, 5, replace=False)
    keywords = tuple(str(w) for w in rng.choice(words, 4, replace=False))
    return MatchRequested(
        request_id=request_id,
        brand_id=brand_id,
        campaign_id=campaign_id,
        niche=Niche(description=f"Campaign for {' '.join(described)} lovers", keywords=keywords),
        target_audience=TargetAudience(countries=countries, age=(), gender="any"),
        platforms=platforms or (),
        tiers=tiers,
        budget_per_creator=budget if budget is not None else Money(Decimal("100000.00"), "USD"),
        limit=limit,
        exclude_creator_ids=exclude,
    )
