"""Operation limits checked before validation: depth, aliases, directives, the objects an
operation may return, and the work of merging fields selected more than once.

Strawberry's QueryDepthLimiter and MaxAliasesLimiter walk a fragment again at every spread, so
a document of 30 fragments each spreading the next one twice takes 2^30 steps to validate
(a few hundred bytes stall the process for minutes). Here each fragment is measured once and
its figures are reused at every spread; the walk is iterative, so deep nesting cannot hit
Python's recursion limit. A fragment counts at every spread, since execution expands it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one operation may ask for; `paged` names the fields that take `first`."""

    max_depth: int = 12
    max_aliases: int = 30
    max_directives: int = 20
    max_nodes: int = 20_000
    max_merge_work: int = 20_000
    max_page_size: int = 500
    default_page_size: int = 50
    paged: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int  # nested fields with selections, as Strawberry's QueryDepthLimiter counts them
    aliases: int
    directives: int
    # Objects the operation can return at most: each field with a selection counts once per
    # item of every page around it (a `first` given as a variable counts as a full page).
    nodes: int = 0
    # Fields in the expanded subtree (the field itself included).
    size: int = 0
    # Work of checking that fields selected under one response name can be merged (a spec
    # rule whose cost grows with the square of the fields sharing a name): pairs of such
    # fields, each weighted by the product of their subtrees' sizes.
    merge_work: int = 0
    # The fields this node contributes to the selection set it sits in, by response name:
    # (count, summed subtree size); fragments and inline fragments merge into their parent's.
    level: tuple[tuple[str, int, int], ...] = ()


_ZERO = Measure(0, 0, 0)


def _children(node: Any, fragments: dict[str, FragmentDefinitionNode]) -> list[Any]:
    if isinstance(node, FragmentSpreadNode):
        fragment = fragments.get(node.name.value)
        return [fragment] if fragment is not None else []
    selection_set = getattr(node, "selection_set", None)
    return list(selection_set.selections) if selection_set is not None else []


def _page(node: FieldNode, limits: Limits, streams: set[int]) -> int:
    """How many items a field's page may hold: its `first` (a variable: a full page); the
    default page for a paged field without one; 1 for any other field, and for the root field
    of a subscription (each event is answered on its own)."""
    if id(node) in streams:
        return 1
    for arg in node.arguments or ():
        if arg.name.value == "first":
            if isinstance(arg.value, IntValueNode):
                return max(0, min(int(arg.value.value), limits.max_page_size))
            if isinstance(arg.value, NullValueNode):
                return limits.default_page_size
            return limits.max_page_size
    return limits.default_page_size if node.name.value in limits.paged else 1


def _merged(parts: list[Measure]) -> tuple[dict[str, tuple[int, int]], int]:
    """The fields of one selection set by response name, and the work of merging them."""
    names: dict[str, tuple[int, int]] = {}
    for part in parts:
        for name, count, size in part.level:
            had = names.get(name, (0, 0))
            names[name] = (had[0] + count, had[1] + size)
    work = 0
    for count, size in names.values():
        if count > 1:
            mean = size // count
            work += count * (count - 1) // 2 * (1 + mean * mean)
    return names, work


def _combine(node: Any, parts: list[Measure], limits: Limits, streams: set[int]) -> Measure:
    aliases = sum(p.aliases for p in parts)
    directives = len(node.directives or ()) + sum(p.directives for p in parts)
    depth = max((p.depth for p in parts), default=0)
    nodes = sum(p.nodes for p in parts)
    size = sum(p.size for p in parts)
    work = sum(p.merge_work for p in parts)
    if isinstance(node, FieldNode | OperationDefinitionNode):
        _, own = _merged(parts)  # this node's own selection set
        work += own
    if isinstance(node, FieldNode):
        aliases += 1 if node.alias else 0
        leaf = not node.selection_set or node.name.value.startswith("__")
        depth = 0 if leaf else 1 + depth
        if node.selection_set:
            nodes = _page(node, limits, streams) * (1 + nodes)
        size += 1
        name = (node.alias or node.name).value
        return Measure(depth, aliases, directives, nodes, size, work, ((name, 1, size),))
    level: tuple[tuple[str, int, int], ...] = ()
    if not isinstance(node, OperationDefinitionNode):  # fragments merge into their parent
        names, _ = _merged(parts)
        level = tuple((name, count, total) for name, (count, total) in names.items())
    return Measure(depth, aliases, directives, nodes, size, work, level)


def measure(document: DocumentNode, limits: Limits | None = None) -> dict[str, Measure]:
    """The figures of each operation, fragments expanded where spread (each measured once)."""
    limits = limits or Limits()
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    streams = {
        id(selection)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode) and d.operation == OperationType.SUBSCRIPTION
        for selection in d.selection_set.selections
    }
    done: dict[int, Measure] = {}
    results: dict[str, Measure] = {}
    for i, definition in enumerate(document.definitions):
        if not isinstance(definition, OperationDefinitionNode):
            continue
        # Iterative post-order; `on_path` breaks fragment cycles (invalid anyway).
        stack: list[tuple[Any, bool]] = [(definition, False)]
        on_path: set[int] = set()
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            if key in done:
                continue
            children = _children(node, fragments)
            if children_done:
                on_path.discard(key)
                parts = [done.get(id(c), _ZERO) for c in children]
                done[key] = _combine(node, parts, limits, streams)
                continue
            if key in on_path:
                continue
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in done)
        name = definition.name.value if definition.name else f"anonymous #{i + 1}"
        results[name] = done[id(definition)]
    return results


def check(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """The limits each operation of `document` exceeds, as GraphQL errors. Checked before the
    spec's validation rules run: some of those cost the square of what a document repeats."""
    errors = []
    for name, m in measure(document, limits).items():
        if m.depth > limits.max_depth:
            errors.append(
                GraphQLError(f"'{name}' exceeds maximum operation depth of {limits.max_depth}")
            )
        if m.aliases > limits.max_aliases:
            errors.append(
                GraphQLError(
                    f"'{name}' uses {m.aliases} aliases; at most {limits.max_aliases} are allowed"
                )
            )
        if m.directives > limits.max_directives:
            errors.append(
                GraphQLError(
                    f"'{name}' uses {m.directives} directives;"
                    f" at most {limits.max_directives} are allowed"
                )
            )
        if m.nodes > limits.max_nodes:
            errors.append(
                GraphQLError(
                    f"'{name}' may return {m.nodes} objects; at most {limits.max_nodes} are"
                    " allowed (lower `first` on nested lists, or give it as a number)"
                )
            )
        if m.merge_work > limits.max_merge_work:
            errors.append(
                GraphQLError(
                    f"'{name}' selects the same fields too many times over"
                    f" (merge work {m.merge_work}; at most {limits.max_merge_work})"
                )
            )
    return errors
