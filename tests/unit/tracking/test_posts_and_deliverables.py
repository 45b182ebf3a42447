"""Which deals a post counts for, and automatic deliverable confirmation."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.tracking.domain.deliverables import (
    AUTO,
    DeliverableState,
    confirmations_due,
    fulfils,
)
from services.tracking.domain.posts import (
    PostSnapshot,
    latest_snapshots,
    memberships,
    merge_snapshot,
    post_belongs_to_deal,
    tags_carried,
)
from services.tracking.translate import post_snapshot
from tests.unit.tracking.builders import T0, post_event, terms

NOW = T0 + timedelta(days=10)


def post(post_id: str, **kwargs: object) -> PostSnapshot:
    return post_snapshot(post_event(post_id, **kwargs))  # type: ignore[arg-type]


def test_latest_snapshot_wins_by_observed_at_then_event_id() -> None:
    old = post("p", observed_at=T0 + timedelta(days=2), likes=5, event_id="e-9")
    new = post("p", observed_at=T0 + timedelta(days=3), likes=50, event_id="e-1")
    tie = post("p", observed_at=T0 + timedelta(days=3), likes=70, event_id="e-2")
    for order in ([old, new, tie], [tie, new, old], [new, old, tie]):
        assert latest_snapshots(order) == [tie]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "p3"]),
            st.integers(0, 3),
            st.sampled_from(["e-1", "e-2", "e-3"]),
            st.sets(st.sampled_from(["#ad", "#bakeco", "@jane"])),
        ),
        max_size=12,
    )
)
def test_latest_snapshots_is_the_fold_of_merge_snapshot(
    specs: list[tuple[str, int, str, set[str]]],
) -> None:
    snapshots = [
        post(p, observed_at=T0 + timedelta(days=2 + day), event_id=e, tags=tuple(tags), likes=day)
        for p, day, e, tags in specs
    ]
    folded: dict[str, PostSnapshot] = {}
    for snapshot in snapshots:
        folded[snapshot.post_id] = merge_snapshot(folded.get(snapshot.post_id), snapshot)
    assert latest_snapshots(snapshots) == list(folded.values())


def test_tags_are_case_insensitive_and_include_caption_hashtags() -> None:
    assert tags_carried(["#AD"], "Fresh bread with @BakeCo #Sourdough.") == {
        "#ad",
        "@bakeco",
        "#sourdough",
    }


def test_membership_needs_the_creator_and_the_named_deal_or_the_period() -> None:
    deal = terms(deal_id="deal-1", creator_id="cr-1", days=30)
    assert post_belongs_to_deal(post("p", creator_id="cr-1"), deal)
    assert not post_belongs_to_deal(post("p", creator_id="cr-2"), deal)
    assert post_belongs_to_deal(post("p", deal_id="deal-1", posted_at=T0 - timedelta(days=3)), deal)
    assert not post_belongs_to_deal(post("p", deal_id="deal-9"), deal)
    after = T0 + timedelta(days=31)
    assert not post_belongs_to_deal(post("p", posted_at=after, observed_at=after), deal)
    other = terms(deal_id="deal-2", creator_id="cr-1", starts_at=T0 + timedelta(days=40))
    assert memberships([post("p")], [deal, other]) == {("deal-1", "p")}


def test_fulfilling_needs_window_kind_and_every_required_tag() -> None:
    deal = terms(required_tags=("#ad", "#BakeCo"))
    spec = deal.deliverables[0]  # a reel
    assert fulfils(post("p", tags=("#AD",), caption="love it #bakeco"), deal, spec)
    assert not fulfils(post("p", tags=("#ad",)), deal, spec)
    assert not fulfils(post("p", tags=("#ad", "#bakeco"), kind="story"), deal, spec)
    late = post("p", tags=("#ad", "#bakeco"), deal_id=deal.deal_id, posted_at=T0 - timedelta(1))
    assert not fulfils(late, deal, spec)


def test_one_post_and_two_stories_are_confirmed_deliverable_by_deliverable() -> None:
    deal = terms(deliverables=(("dl-post", "post", 1), ("dl-stories", "story", 2)))
    story1 = post("s1", kind="story", posted_at=T0 + timedelta(days=1))
    state = DeliverableState(deal, (story1,), {})
    assert confirmations_due(state, NOW) == []
    feed = post("f1", kind="post")
    due = confirmations_due(DeliverableState(deal, (story1, feed), {}), NOW)
    assert [(c.deliverable_id, c.post_ids, c.confirmed_by) for c in due] == [
        ("dl-post", ("f1",), AUTO)
    ]
    story2 = post("s2", kind="story", posted_at=T0 + timedelta(days=2))
    state = DeliverableState(deal, (story1, feed, story2), {"dl-post": ("f1",)})
    due = confirmations_due(state, NOW)
    assert [(c.deliverable_id, c.post_ids, c.post_id) for c in due] == [
        ("dl-stories", ("s1", "s2"), "s2")
    ]
    assert state.all_confirmed_with(due)


def test_each_post_confirms_at_most_one_unit() -> None:
    deal = terms(deliverables=(("dl-a", "reel", 1), ("dl-b", "reel", 1)))
    one = post("r1")
    due = confirmations_due(DeliverableState(deal, (one,), {}), NOW)
    assert [c.deliverable_id for c in due] == ["dl-a"]
    after = DeliverableState(deal, (one,), {"dl-a": ("r1",)})
    assert confirmations_due(after, NOW) == []


def test_manually_confirmed_deliverables_are_never_confirmed_again() -> None:
    deal = terms(deliverables=(("dl-a", "reel", 1), ("dl-b", "reel", 1)))
    state = DeliverableState(deal, (post("r1"),), {"dl-a": ()})
    assert [c.deliverable_id for c in confirmations_due(state, NOW)] == ["dl-b"]


def test_confirmed_set_depends_only_on_how_many_posts_fulfil() -> None:
    deal = terms(deliverables=(("dl-a", "reel", 2), ("dl-b", "reel", 1), ("dl-c", "reel", 3)))
    posts = [post(f"r{i}", posted_at=T0 + timedelta(hours=i)) for i in range(6)]
    rng = random.Random(7)
    for total in range(len(posts) + 1):
        expected = {0: set(), 1: set(), 2: {"dl-a"}, 3: {"dl-a", "dl-b"}}.get(
            total, {"dl-a", "dl-b"} if total < 6 else {"dl-a", "dl-b", "dl-c"}
        )
        for _ in range(5):
            arrived = rng.sample(posts[:total], total)
            confirmed: dict[str, tuple[str, ...]] = {}
            seen: list[PostSnapshot] = []
            for p in arrived:  # one post per batch
                seen.append(p)
                for c in confirmations_due(DeliverableState(deal, tuple(seen), confirmed), NOW):
                    confirmed[c.deliverable_id] = c.post_ids
            assert set(confirmed) == expected
            used = [p for ids in confirmed.values() for p in ids]
            assert len(used) == len(set(used))
