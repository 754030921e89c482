"""RabbitMQ's topic matching: ``.``-separated words, ``*`` one word, ``#`` zero or more words.

An empty routing key has no words at all (``""`` is matched by ``#`` and by ``""``, not by ``*``), while
``"a."`` has two words, the second one empty, as in ``rabbit_exchange_type_topic:split_topic_key/1``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


def split_key(key: str) -> list[str]:
    return key.split(".") if key else []


class _Node(Generic[T]):
    __slots__ = ("children", "values", "hash", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: dict[T, int] = {}  # value -> number of bindings ending here that carry it
        # The "#" and "*" children again, so the walk does not look them up at every node.
        self.hash: _Node[T] | None = None
        self.star: _Node[T] | None = None

    def set_child(self, word: str, child: _Node[T] | None) -> None:
        if child is None:
            del self.children[word]
        else:
            self.children[word] = child
        if word == "#":
            self.hash = child
        elif word == "*":
            self.star = child


class TopicTrie(Generic[T]):
    """Binding keys in a trie, so matching cost depends on the key's length, not the number of bindings."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        for word in split_key(pattern):
            child = node.children.get(word)
            if child is None:
                child = _Node()
                node.set_child(word, child)
            node = child
        node.values[value] = node.values.get(value, 0) + 1

    def remove(self, pattern: str, value: T) -> None:
        nodes: list[_Node[T]] = [self._root]  # the path, root first
        words = split_key(pattern)
        node = self._root
        for word in words:
            child = node.children.get(word)
            if child is None:
                return
            nodes.append(child)
            node = child
        count = node.values.get(value, 0)
        if count <= 1:
            node.values.pop(value, None)
        else:
            node.values[value] = count - 1
        # Prune the branch that is now empty, so that a long-running broker does not accumulate dead nodes: cut
        # it once, below the deepest node that still holds something (the rest goes with it).
        depth = len(words)
        while depth > 0:
            below = nodes[depth]
            if below.values or len(below.children) > (1 if depth < len(words) else 0):
                break
            depth -= 1
        if depth < len(words):
            nodes[depth].set_child(words[depth], None)

    def match(self, routing_key: str) -> set[T]:
        """The values of every binding whose key matches ``routing_key``.

        Iterative, and bounded whatever the binding keys: every trie node is visited at most once. Above the
        first ``#`` of a path a node can only be reached after as many words as its depth, so the walk carries
        one position. Below a ``#`` a node can be reached at many positions; :meth:`_match_below` carries the
        set of them as the bits of an int, so a node costs one pass of integer operations over the key
        (``#.#.x``, ``#.*.*...x`` and a 30,000-level filter all stay linear in the key's length).
        """
        words = routing_key.split(".") if routing_key else []
        n = len(words)
        found: set[T] = set()
        below: list[tuple[_Node[T], int]] = []
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            node, i = pop()
            if i == n and node.values:
                found.update(node.values)
            hash_node = node.hash
            if hash_node is not None:
                if hash_node.children:
                    # Reached at every position from i on: bits i..n.
                    below.append((hash_node, ((1 << (n + 1)) - 1) ^ ((1 << i) - 1)))
                elif hash_node.values:
                    found.update(hash_node.values)  # a trailing '#' takes whatever is left
            if i == n:
                continue
            word = words[i]
            i += 1
            child = node.children.get(word)
            if child is not None and child is not hash_node:  # a literal "#" word is taken by the '#' above
                if child.children:
                    push((child, i))
                elif i == n and child.values:
                    found.update(child.values)
            star = node.star
            if star is not None and star is not child:
                if star.children:
                    push((star, i))
                elif i == n and star.values:
                    found.update(star.values)
        if below:
            _match_below(below, words, found)
        return found


def _match_below(stack: list[tuple[_Node[T], int]], words: list[str], found: set[T]) -> None:
    """Walk the subtrees under a ``#``. Each entry is a node and ``reach``: bit ``j`` set when the binding key
    down to that node matches ``words[:j]``. A child's reach is its parent's, shifted by one word and
    filtered by the word; a ``#`` turns it into every position from its lowest one on."""
    n = len(words)
    full = (1 << (n + 1)) - 1
    end = 1 << n
    has_next = end - 1  # positions with a word left to take
    after: dict[str, int] | None = None  # word -> bits j + 1 for every j where words[j] is that word

    pop, push = stack.pop, stack.append
    while stack:
        node, reach = pop()
        if reach & end and node.values:
            found.update(node.values)
        hash_node = node.hash
        if hash_node is not None:
            if hash_node.children:
                push((hash_node, full ^ ((reach & -reach) - 1)))
            elif hash_node.values:
                found.update(hash_node.values)
        took = (reach & has_next) << 1  # positions after taking any one word
        if not took:
            continue
        star = node.star
        children = node.children
        if star is not None:
            if star.children:
                push((star, took))
            elif took & end and star.values:
                found.update(star.values)
        if took & (took - 1) == 0:
            # One position (the usual case below "#.a"): one lookup.
            child = children.get(words[took.bit_length() - 2])
            if child is not None and child is not hash_node and child is not star:
                if child.children:
                    push((child, took))
                elif took & end and child.values:
                    found.update(child.values)
            continue
        literals = len(children) - (hash_node is not None) - (star is not None)
        if not literals:
            continue
        if literals < took.bit_count():
            # Few children, many positions: filter the reach by each child's word.
            if after is None:
                after = _after_bits(words)
            for word, child in children.items():
                if child is not hash_node and child is not star:
                    _reach(child, took & after.get(word, 0), end, stack, found)
        else:
            # Few positions: look each one's word up.
            reached: dict[str, int] = {}
            bits = took
            while bits:
                low = bits & -bits
                bits ^= low
                word = words[low.bit_length() - 2]
                if word in children and word != "#" and word != "*":
                    reached[word] = reached.get(word, 0) | low
            for word, bits in reached.items():
                _reach(children[word], bits, end, stack, found)


def _after_bits(words: list[str]) -> dict[str, int]:
    """For each word of the key, the positions just after it as bits: bit ``j + 1`` for ``words[j]``."""
    raws: dict[str, bytearray] = {}
    size = (len(words) >> 3) + 1
    for j, word in enumerate(words, 1):
        raw = raws.get(word)
        if raw is None:
            raw = raws[word] = bytearray(size)
        raw[j >> 3] |= 1 << (j & 7)
    return {word: int.from_bytes(raw, "little") for word, raw in raws.items()}


def _reach(child: _Node[T], reach: int, end: int, stack: list[tuple[_Node[T], int]], found: set[T]) -> None:
    if not reach:
        return
    if child.children:
        stack.append((child, reach))
    elif child.values and reach & end:
        found.update(child.values)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether one binding key matches one routing key."""
    trie: TopicTrie[int] = TopicTrie()
    trie.add(pattern, 0)
    return bool(trie.match(routing_key))
