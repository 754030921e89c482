"""RabbitMQ's topic matching: ``.``-separated words, ``*`` one word, ``#`` zero or more words.

An empty routing key has no words at all (``""`` is matched by ``#`` and by ``""``, not by ``*``), while
``"a."`` has two words, the second one empty, as in ``rabbit_exchange_type_topic:split_topic_key/1``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


def split_key(key: str) -> list[str]:
    return key.split(".") if key else []


class _Node(Generic[T]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: dict[T, int] = {}  # value -> number of bindings ending here that carry it


class TopicTrie(Generic[T]):
    """Binding keys in a trie, so matching cost depends on the key's length, not the number of bindings."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        for word in split_key(pattern):
            node = node.children.setdefault(word, _Node())
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
            del parent.children[word]

    def match(self, routing_key: str) -> set[T]:
        words = split_key(routing_key)
        n = len(words)
        found: set[T] = set()
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            marker = (id(node), i)
            if marker in seen:
                continue
            seen.add(marker)
            children = node.children
            if i == n:
                found.update(node.values)
            else:
                child = children.get(words[i])
                if child is not None:
                    stack.append((child, i + 1))
                star = children.get("*")
                if star is not None and words[i] != "*":
                    stack.append((star, i + 1))
            hash_node = children.get("#")
            if hash_node is not None:
                # '#' swallows zero or more of the remaining words.
                stack.extend((hash_node, j) for j in range(i, n + 1))
        return found


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


def matching(patterns: Iterable[str], routing_key: str) -> list[str]:
    return [p for p in patterns if topic_matches(p, routing_key)]
