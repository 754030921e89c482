"""RabbitMQ topic matching: unit tests, a table observed on a real RabbitMQ, and a property test of the trie."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakebroker.model import Broker, Message
from fakebroker.model.topic import TopicTrie, split_key, topic_matches


# -- an independent reference matcher ----------------------------------------------------------------
def _words_string(key: str) -> str:
    """Each word prefixed by NUL, so that an empty key is the empty string and ``"a."`` is two words."""
    return "".join("\0" + word for word in (key.split(".") if key else []))


def reference_match(pattern: str, key: str) -> bool:
    """Topic matching as a regular expression over NUL-prefixed words: ``*`` is exactly one word, ``#`` any
    number of words (zero included), anything else a literal word."""
    parts = []
    for word in pattern.split(".") if pattern else []:
        if word == "*":
            parts.append("\0[^\0]*")
        elif word == "#":
            parts.append("(?:\0[^\0]*)*")
        else:
            parts.append(re.escape("\0" + word))
    return re.fullmatch("".join(parts), _words_string(key)) is not None


# -- the rules, one by one -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "words"),
    [("", []), ("a", ["a"]), ("a.", ["a", ""]), (".", ["", ""]), ("a..b", ["a", "", "b"]), ("..", ["", "", ""])],
)
def test_split_key_counts_empty_words(key: str, words: list[str]) -> None:
    assert split_key(key) == words


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*", "a", True),
        ("*", "a.b", False),  # one word exactly
        ("*", "", False),  # the empty key has no word for * to take
        ("*", "a.", False),
        ("*.*", "a.", True),  # "a." is two words, the second empty
        ("*", ".", False),
        ("*.*", ".", True),
        ("#", "", True),  # zero words
        ("#", "a.b.c", True),
        ("", "", True),
        ("", "a", False),
        ("a", "", False),
        ("a.#", "a", True),  # # takes zero words
        ("a.#", "a.b.c", True),
        ("a.#", "b.a", False),
        ("#.a", "a", True),
        ("#.a", "x.y.a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("#.*", "", False),  # at least one word
        ("#.#", "", True),
        ("a.", "a.", True),
        ("a.", "a", False),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),  # * takes the empty word
        ("*", "*", True),
        ("a", "*", False),  # a * in a routing key is only a word
        ("#", "#", True),
        ("a", "#", False),
        ("A", "a", False),  # case matters
    ],
)
def test_topic_rules(pattern: str, key: str, expected: bool) -> None:
    assert reference_match(pattern, key) is expected
    assert topic_matches(pattern, key) is expected
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "q")
    assert trie.match(key) == ({"q"} if expected else set())


# -- what a real RabbitMQ 3.10.8 routed ------------------------------------------------------------------
# Observed with pika: one queue per binding key on a topic exchange, each routing key published once.
RABBITMQ_KEYS = ["", "a", "a.", ".", "a.b", "a..b", "..", "a.b.c", "b", "a.x.b", "a.b.b", "*", "#", "x.a", "a.#"]
ALL = RABBITMQ_KEYS
RABBITMQ_OBSERVED = {
    "": [""],
    "#": ALL,
    "*": ["a", "b", "*", "#"],
    "a": ["a"],
    "a.*": ["a.", "a.b", "a.#"],
    "a.#": ["a", "a.", "a.b", "a..b", "a.b.c", "a.x.b", "a.b.b", "a.#"],
    "#.a": ["a", "x.a"],
    "*.*": ["a.", ".", "a.b", "x.a", "a.#"],
    "a.#.b": ["a.b", "a..b", "a.x.b", "a.b.b"],
    "#.#": ALL,
    "a.*.#": ["a.", "a.b", "a..b", "a.b.c", "a.x.b", "a.b.b", "a.#"],
    "#.*": [k for k in ALL if k != ""],
    "*.#": [k for k in ALL if k != ""],
    "a.": ["a."],
    ".": ["."],
    "*.": ["a.", "."],
    ".*": ["."],
    "a..b": ["a..b"],
    "a.*.b": ["a..b", "a.x.b", "a.b.b"],
    "#.b": ["a.b", "a..b", "b", "a.x.b", "a.b.b"],
}


def test_topic_exchange_routes_as_rabbitmq_did() -> None:
    broker = Broker()
    vhost = broker.vhost()
    vhost.declare_exchange("t", "topic")
    queue_of = {}
    for i, pattern in enumerate(RABBITMQ_OBSERVED):
        queue_of[pattern] = vhost.declare_queue(f"q{i}").name
        vhost.bind(queue_of[pattern], "t", pattern)
    for key in RABBITMQ_KEYS:
        broker.publish("t", key, key.encode())
    for pattern, expected in RABBITMQ_OBSERVED.items():
        got = [m.routing_key for m in vhost.queue(queue_of[pattern]).peek()]
        assert got == expected, pattern
        assert [k for k in RABBITMQ_KEYS if reference_match(pattern, k)] == expected, pattern


# -- the trie's bookkeeping ------------------------------------------------------------------------------
def test_trie_counts_duplicate_bindings_and_prunes_on_remove() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.*.c", "q")
    trie.add("a.*.c", "q")  # e.g. two bindings with the same key and different arguments
    trie.add("a.#", "r")
    trie.remove("a.*.c", "q")
    assert trie.match("a.b.c") == {"q", "r"}
    trie.remove("a.*.c", "q")
    assert trie.match("a.b.c") == {"r"}
    trie.remove("a.*.c", "q")  # removing what is not there is a no-op
    trie.remove("x.y", "q")
    trie.remove("a.#", "r")
    assert trie.match("a.b.c") == set()
    assert trie._root.children == {} and trie._root.values == {}
    assert trie._root.hash is None and trie._root.star is None


def test_many_hashes_do_not_explode() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(".".join(["#"] * 30) + ".z", "q")
    assert trie.match(".".join(["a"] * 60)) == set()
    assert trie.match(".".join(["a"] * 60) + ".z") == {"q"}


# -- property test: the trie against the reference, with bindings added and removed -----------------------
PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#", "ab"])
KEY_WORDS = st.sampled_from(["a", "b", "", "ab", "c", "*", "#"])
patterns = st.lists(PATTERN_WORDS, max_size=5).map(".".join)
keys = st.lists(KEY_WORDS, max_size=6).map(".".join)



@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Adds and removes over a small pool of binding keys, so that the same binding is often added twice and
    removed again (a pool of all keys would rarely repeat one)."""
    pool = draw(st.lists(patterns, min_size=1, max_size=8))
    op = st.tuples(st.sampled_from(["add", "add", "remove"]), st.sampled_from(pool),
                   st.sampled_from(["q0", "q1", "q2", "q3"]))
    return draw(st.lists(op, max_size=60))


@settings(max_examples=300, deadline=None)
@given(operations(), st.lists(keys, min_size=1, max_size=10))
def test_trie_matches_reference(ops: list[tuple[str, str, str]], routing_keys: list[str]) -> None:
    trie: TopicTrie[str] = TopicTrie()
    live: Counter[tuple[str, str]] = Counter()
    for op, pattern, value in ops:
        if op == "add":
            trie.add(pattern, value)
            live[(pattern, value)] += 1
        else:
            trie.remove(pattern, value)
            if live[(pattern, value)]:
                live[(pattern, value)] -= 1
    for key in routing_keys:
        expected = {value for (pattern, value), n in live.items() if n and reference_match(pattern, key)}
        assert trie.match(key) == expected, (key, sorted(+live))
    if not +live:
        assert trie._root.children == {} and trie._root.values == {}
        assert trie._root.hash is None and trie._root.star is None


@settings(max_examples=300, deadline=None)
@given(patterns, keys)
def test_topic_matches_agrees_with_reference(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key) is reference_match(pattern, key)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(patterns, st.booleans()), max_size=20), keys)
def test_topic_exchange_bind_unbind_matches_reference(bindings: list[tuple[str, bool]], key: str) -> None:
    broker = Broker()
    vhost = broker.vhost()
    vhost.declare_exchange("t", "topic")
    live: set[tuple[str, str]] = set()
    for i, (pattern, remove) in enumerate(bindings):
        queue = f"q{i % 4}"
        vhost.declare_queue(queue)
        if remove:
            vhost.unbind(queue, "t", pattern)
            live.discard((queue, pattern))
        else:
            vhost.bind(queue, "t", pattern)
            live.add((queue, pattern))
    expected = sorted({q for q, p in live if reference_match(p, key)})
    assert vhost.route(Message("t", key, b"")) == expected


# -- pathological binding keys: bounded, iterative matching ----------------------------------------------------
def dp_match(pattern: str, key: str) -> bool:
    """A second reference, by dynamic programming over (pattern word, key word): no regex backtracking, so it
    stays fast for the long patterns and keys below."""
    pw, kw = split_key(pattern), split_key(key)
    row = [True] + [False] * len(kw)  # row[j]: pattern[:i] matches kw[:j]
    for word in pw:
        if word == "#":
            new, seen = [], False
            for ok in row:
                seen = seen or ok
                new.append(seen)
        else:
            new = [False] + [row[j] and (word == "*" or word == kw[j]) for j in range(len(kw))]
        row = new
    return row[-1]


LONG = ".".join(["a"] * 32_767 + ["x"])  # the longest MQTT topic of one-letter levels: 65,535 bytes


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#.#.x", LONG, True),
        ("#.#.#.x", LONG, True),
        ("#.#.y", LONG, False),
        ("#." + ".".join(["*"] * 400) + ".x", LONG, True),
        ("#." + ".".join(["*"] * 400) + ".y", LONG, False),
        (".".join(["#"] * 300) + ".x", LONG, True),
        (".".join(["#.a"] * 300) + ".#.x", LONG, True),
        (".".join(["#.a"] * 300) + ".#.b", LONG, False),
        (".".join(["a"] * 990), ".".join(["a"] * 990), True),  # deeper than Python's recursion limit
        (".".join(["*"] * 30_000), ".".join(["a"] * 30_000), True),
        (".".join(["*"] * 30_000), ".".join(["a"] * 29_999), False),
        (".".join(["a"] * 30_000) + ".#", ".".join(["a"] * 30_001), True),
    ],
    ids=lambda v: v if isinstance(v, bool) or len(v) < 20 else f"{v[:12]}...({v.count('.') + 1} words)",
)
def test_pathological_keys_match_in_bounded_time(pattern: str, key: str, expected: bool) -> None:
    # Each case took from minutes (quadratic in the key) to a RecursionError before matching was made
    # iterative; now each is a few milliseconds. The bound is generous so that a loaded machine cannot fail it.
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "q")
    trie.add("#", "all")
    start = time.perf_counter()
    got = trie.match(key)
    assert time.perf_counter() - start < 2.0
    assert got == ({"q", "all"} if expected else {"all"})
    assert topic_matches(pattern, key) is expected
    if pattern.count(".") * key.count(".") < 20_000_000:  # the reference is quadratic
        assert dp_match(pattern, key) is expected


def test_many_nested_hash_bindings_share_the_walk() -> None:
    trie: TopicTrie[int] = TopicTrie()
    for i in range(200):
        trie.add(".".join(["#"] * (i % 20 + 1) + [f"w{i}"]), i)
    key = ".".join(f"w{i}" for i in range(0, 200, 2))
    start = time.perf_counter()
    assert trie.match(key) == {198}
    assert trie.match(key + ".w7") == {7}
    assert time.perf_counter() - start < 2.0


DEEP_PATTERN_WORDS = st.sampled_from(["a", "b", "*", "#", "#", ""])
DEEP_KEY_WORDS = st.sampled_from(["a", "b", "", "*", "#"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(DEEP_PATTERN_WORDS, max_size=14).map(".".join), min_size=1, max_size=6),
       st.lists(st.lists(DEEP_KEY_WORDS, max_size=40).map(".".join), min_size=1, max_size=5))
def test_trie_matches_reference_on_deep_patterns(bindings: list[str], routing_keys: list[str]) -> None:
    """Longer keys and binding keys full of '#' and '*' than above, against the dynamic-programming reference:
    this is where the walk below a '#' carries many positions at once."""
    trie: TopicTrie[int] = TopicTrie()
    for i, pattern in enumerate(bindings):
        trie.add(pattern, i)
    for key in routing_keys:
        assert trie.match(key) == {i for i, p in enumerate(bindings) if dp_match(p, key)}, key


@settings(max_examples=200, deadline=None)
@given(patterns, keys)
def test_dp_reference_agrees_with_regex_reference(pattern: str, key: str) -> None:
    assert dp_match(pattern, key) is reference_match(pattern, key)
