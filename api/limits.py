"""Operation limits checked at validation: depth, aliases and directives.

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
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
)


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int  # nested fields with selections, as Strawberry's QueryDepthLimiter counts them
    aliases: int
    directives: int


_ZERO = Measure(0, 0, 0)


def _children(node: Any, fragments: dict[str, FragmentDefinitionNode]) -> list[Any]:
    if isinstance(node, FragmentSpreadNode):
        fragment = fragments.get(node.name.value)
        return [fragment] if fragment is not None else []
    selection_set = getattr(node, "selection_set", None)
    return list(selection_set.selections) if selection_set is not None else []


def _combine(node: Any, parts: list[Measure]) -> Measure:
    aliases = sum(p.aliases for p in parts)
    directives = len(node.directives or ()) + sum(p.directives for p in parts)
    depth = max((p.depth for p in parts), default=0)
    if isinstance(node, FieldNode):
        aliases += 1 if node.alias else 0
        leaf = not node.selection_set or node.name.value.startswith("__")
        depth = 0 if leaf else 1 + depth
    return Measure(depth, aliases, directives)


def measure(document: DocumentNode) -> dict[str, Measure]:
    """Depth, aliases and directives of each operation, fragments expanded where spread."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
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
                done[key] = _combine(node, parts)
                continue
            if key in on_path:
                continue
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in done)
        name = definition.name.value if definition.name else f"anonymous #{i + 1}"
        results[name] = done[id(definition)]
    return results


def operation_limits_rule(
    max_depth: int, max_aliases: int, max_directives: int
) -> type[ValidationRule]:
    """A validation rule refusing operations deeper, or with more aliases or directives, than
    these limits."""

    class OperationLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            for name, m in measure(context.document).items():
                if m.depth > max_depth:
                    context.report_error(
                        GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}")
                    )
                if m.aliases > max_aliases:
                    context.report_error(
                        GraphQLError(
                            f"'{name}' uses {m.aliases} aliases; at most {max_aliases} are allowed"
                        )
                    )
                if m.directives > max_directives:
                    context.report_error(
                        GraphQLError(
                            f"'{name}' uses {m.directives} directives;"
                            f" at most {max_directives} are allowed"
                        )
                    )

    return OperationLimits
