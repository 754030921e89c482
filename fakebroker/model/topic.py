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
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for word in split_key(pattern):
            child = node.children.get(word)
            if child is None:
                return
            path.append((node, word))
            node = child
        count = node.values.get(value, 0)
        if count <= 1:
            node.values.pop(value, None)
        else:
            node.values[value] = count - 1
        # Prune empty branches so a long-running broker does not accumulate dead nodes.
        for parent, word in reversed(path):
            child = parent.children[word]
            if child.values or child.children:
                break
            parent.set_child(word, None)

    def match(self, routing_key: str) -> set[T]:
        words = routing_key.split(".") if routing_key else []
        found: set[T] = set()
        self._walk(self._root, words, 0, len(words), found, None)
        return found

    def _walk(self, node: _Node[T], words: list[str], i: int, n: int, found: set[T],
              seen: set[tuple[int, int]] | None) -> None:
        """Collect the values of every binding under ``node`` that matches ``words[i:]``.

        ``seen`` is None until the walk is below a '#'. Leaves are handled without a call of their own: most
        binding keys end in a literal word, ``*`` or ``#``, and this is the routing hot path.
        """
        if i == n and node.values:
            found.update(node.values)
        hash_node = node.hash
        if hash_node is not None:
            if not hash_node.children:
                # A trailing '#' takes whatever is left.
                if hash_node.values:
                    found.update(hash_node.values)
            else:
                # '#' swallows zero or more words. Below a first '#' the walk can reach a node at several
                # positions, so each (nested '#' node, position) is expanded once: without that a key like
                # "#.#.#..." would take exponential time. Above it, every node is reached once.
                if seen is None and hash_node.hash is None:
                    # The common case ("#.a", "#.*.b"), inlined: the '#' node's children are tried at every
                    # remaining position (and its own bindings at the end).
                    below: set[tuple[int, int]] = set()
                    after_hash, hash_star = hash_node.children, hash_node.star
                    for j in range(i, n):
                        word = words[j]
                        child = after_hash.get(word)
                        if child is not None:
                            if child.children:
                                self._walk(child, words, j + 1, n, found, below)
                            elif j + 1 == n and child.values:
                                found.update(child.values)
                        if hash_star is not None and word != "*":
                            if hash_star.children:
                                self._walk(hash_star, words, j + 1, n, found, below)
                            elif j + 1 == n and hash_star.values:
                                found.update(hash_star.values)
                    if hash_node.values:
                        found.update(hash_node.values)
                elif seen is None:
                    below = set()
                    for j in range(i, n + 1):
                        self._walk(hash_node, words, j, n, found, below)
                else:
                    key = id(hash_node)
                    for j in range(i, n + 1):
                        if (key, j) not in seen:
                            seen.add((key, j))
                            self._walk(hash_node, words, j, n, found, seen)
        if i == n:
            return
        word = words[i]
        i += 1
        child = node.children.get(word)
        if child is not None:
            if child.children:
                self._walk(child, words, i, n, found, seen)
            elif i == n and child.values:
                found.update(child.values)
        star = node.star
        if star is not None and word != "*":
            if star.children:
                self._walk(star, words, i, n, found, seen)
            elif i == n and star.values:
                found.update(star.values)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether one binding key matches one routing key (straightforward recursive definition)."""
    return _match_words(split_key(pattern), split_key(routing_key))


def _match_words(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match_words(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    if head == "*" or head == words[0]:
        return _match_words(rest, words[1:])
    return False
