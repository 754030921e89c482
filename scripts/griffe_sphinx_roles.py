"""A griffe extension for the documentation site: the docstrings' Sphinx roles become links.

fakebroker's docstrings cross-reference with Sphinx roles (``:func:`start```, ``:class:`~fakebroker.X```,
``:meth:`on```). mkdocstrings renders Markdown, where those would show as literal text; this extension rewrites
each role into a mkdocs-autorefs link to the full path of its target, resolved the way Sphinx would: in the
docstring's own scope, then (for a method of a base class) in its subclasses.

- A target in the public API (``fakebroker.__all__`` and their members) gets a required link: if the site does
  not document it, mkdocs-autorefs warns.
- A target elsewhere in the package gets an optional link (plain code unless the site documents it).
- A name that resolves to nothing (a renamed or removed function) is a warning.

``mkdocs build --strict`` turns those warnings into a failed build. Loaded by mkdocs.yml; not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

logger = griffe.get_logger("griffe_sphinx_roles")

ROLE = re.compile(r":(?:py:)?(?P<role>func|class|meth|attr|mod|exc|data|obj):`(?P<target>[^`]+)`")


def exists(obj: griffe.Object, path: str) -> bool:
    try:
        obj.modules_collection[path]
    except (KeyError, griffe.AliasResolutionError):
        return False
    return True


def canonical(obj: griffe.Object, path: str) -> str:
    found = obj.modules_collection[path]
    return str(found.final_target.path) if found.is_alias else str(found.path)


def in_scope(obj: griffe.Object, target: str) -> str | None:
    """``target`` resolved from ``obj`` and its parents, as Python's scoping would find its first part."""
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError):
            scope = scope.parent
            continue
        full = f"{path}.{rest}" if rest else path
        return full if exists(obj, full) else None
    return None


def owning_class(obj: griffe.Object) -> griffe.Class | None:
    scope: griffe.Object | None = obj
    while scope is not None and not scope.is_class:
        scope = scope.parent
    return scope  # type: ignore[return-value]


class SphinxRoles(griffe.Extension):
    """Rewrite the roles once the whole package is loaded, so that every name can be resolved."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.objects: list[griffe.Object] = []
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            self.objects.append(obj)
            stack.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
        # The public API: what the package exports, under both names, and the bases whose members those inherit.
        self.public: list[str] = []
        for name in pkg.exports or ():
            exported = pkg.modules_collection[f"{pkg.path}.{name}"].final_target
            self.public += [f"{pkg.path}.{name}", str(exported.path)]
            if isinstance(exported, griffe.Class):
                self.public += [str(base.path) for base in exported.mro()]
        for obj in self.objects:
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m, o=obj: self.link(o, m), obj.docstring.value)  # type: ignore[misc]

    def subclasses(self, cls: griffe.Class) -> list[griffe.Class]:
        found = []
        for obj in self.objects:
            if isinstance(obj, griffe.Class) and obj is not cls:
                try:
                    mro = obj.mro()
                except (ValueError, griffe.AliasResolutionError):
                    continue
                if any(base.path == cls.path for base in mro):
                    found.append(obj)
        return found

    def resolve(self, obj: griffe.Object, target: str) -> str | None:
        if exists(obj, target):
            return target
        full = in_scope(obj, target)
        if full is not None:
            return full
        cls = owning_class(obj)
        if cls is not None:
            for sub in self.subclasses(cls):
                full = in_scope(sub, target) if "." in target else None
                if full is None and target in sub.all_members:
                    full = f"{sub.path}.{target}"
                if full is not None:
                    return full
        return None

    def instance_attribute(self, obj: griffe.Object, name: str) -> bool:
        """Whether the class around ``obj`` assigns ``self.<name>`` (griffe only sees those set in __init__)."""
        cls = owning_class(obj)
        assigned = re.compile(rf"\bself\.{re.escape(name)}\s*(?::[^=]+)?=")
        return cls is not None and any(assigned.search(line) for line in cls.lines)

    def link(self, obj: griffe.Object, match: re.Match[str]) -> str:
        target = match["target"]
        short = target.startswith("~")
        target = target.lstrip("~.")
        # As in Sphinx: shown as written, or only its last part after a ~.
        shown = f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"
        full = self.resolve(obj, target)
        if full is None:
            if match["role"] == "attr" and self.instance_attribute(obj, target):
                return shown
            logger.warning("%s: %s does not resolve to any object (renamed or removed?)", obj.path, match[0])
            return shown
        path = canonical(obj, full)
        if any(path == p or path.startswith(p + ".") for p in self.public):
            return f'<autoref identifier="{full}">{shown}</autoref>'
        return f'<autoref identifier="{full}" optional>{shown}</autoref>'
