"""A faster GraphQL executor for what list pages are made of.

A page of 50 leads is ~600 field resolutions; graphql-core runs each through the full machinery
(resolve info, resolver wrapper, completion), which dominates the cost of the request. Two fast
paths cut that, each taking the normal path whenever it cannot give exactly the same result:

- a *leaf* field that Strawberry would read with a plain `getattr` (no resolver, no extensions,
  no permissions, no arguments), or whose resolver is marked `@pure` (a sync function of the
  source alone), and whose type is a scalar or enum, is read and serialised directly;
- a *list of objects* (e.g. a connection's `edges`), or a single object (e.g. its `pageInfo`),
  whose sub-selection is made only of such leaves and of plain nested objects (e.g. `node`) is
  built in one go by a function generated once per selection (Python source made of generated
  names only), instead of field by field;
  strings, booleans, timestamps and enum members are serialised inline there.

Anything else — fragments, directives, arguments, resolvers that are not pure, abstract types,
a null in a non-null field, a value that does not serialise — goes through graphql-core
unchanged, so results and errors are exactly what it would produce.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import EnumMeta
from operator import attrgetter
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLString,
    SelectionSetNode,
)
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.types.base_scalars import isoformat as strawberry_isoformat
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryOptional

F = TypeVar("F", bound=Callable[..., Any])


def pure(fn: F) -> F:
    """Mark a sync resolver that depends only on its source object (safe for the fast paths)."""
    fn.__leadflow_pure__ = True  # type: ignore[attr-defined]
    return fn


C = TypeVar("C", bound=type)

# The serialisers of scalars whose datetime values serialise as `value.isoformat()`: Strawberry's
# own, and api.graphql's aware DateTime (datetime.isoformat itself).
_ISOFORMATS = (strawberry_isoformat, datetime.isoformat)


def direct_input(cls: C) -> C:
    """Build this input type from its GraphQL value directly (Strawberry's `from_input`).

    Strawberry converts an input value field by field through its generic `convert_argument`,
    resolving each field's type again every time: for a batch of 100 small inputs that costs
    as much as recording them. Here each field's way in is worked out once: a plain scalar
    (already parsed by graphql-core) is taken as it is, anything else (enums, lists, nested
    inputs, `Maybe`) goes through Strawberry's own conversion, so the result is the same.
    """
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    plan: list[tuple[str, str, Any]] = []
    required = {
        f.python_name: None
        for f in definition.fields
        if f.default_value is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }

    def build(target: type, value: Any, context: InputContext) -> Any:
        if not plan:
            for f in definition.fields:
                name = context.config.name_converter.from_field(f)
                type_ = f.resolve_type(type_definition=definition)
                inner = type_.of_type if type(type_) is StrawberryOptional else type_
                plain = inner is not GlobalID and is_scalar(inner, context.scalar_registry)
                plan.append((name, f.python_name, None if plain else type_))
        kwargs = dict(required)
        for name, python_name, type_ in plan:
            if name in value:
                v = value[name]
                kwargs[python_name] = v if type_ is None else context.convert(v, type_, name)
        return target(**kwargs)

    definition.from_input = build
    return cls


class _Slow(Exception):
    """The fast path met something only the normal path can answer."""


Getter = Callable[[Any], Any]


def _definition(field_def: Any) -> Any:
    return (field_def.extensions or {}).get("strawberry-definition")


def _reader(field_def: Any) -> Getter | None:
    """How to get the field's raw value from its source, when that is trivial."""
    definition = _definition(field_def)
    if definition is None or definition.extensions or definition.permission_classes:
        return None
    if field_def.args:
        return None
    resolver = definition.base_resolver
    if resolver is None:
        name = definition.python_name
        return lambda source: getattr(source, name, None)
    func = getattr(resolver, "wrapped_func", None)
    if func is not None and getattr(func, "__leadflow_pure__", False):
        return func  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True, slots=True)
class _Leaf:
    """How to read and serialise one leaf field.

    `fast` is the class of the values that serialise without help (to themselves, or through
    `convert`); any other value, None included, goes through `slow`.
    """

    read: Getter
    attribute: str | None  # the source attribute `read` returns, when it is a plain one
    fast: type | None
    convert: Getter | None
    slow: Getter


def _leaf(field_def: Any) -> _Leaf | None:
    """How to produce the serialised value of a leaf field; its `slow` raises _Slow when unsure."""
    read = _reader(field_def)
    if read is None:
        return None
    gql_type = field_def.type
    nullable = not isinstance(gql_type, GraphQLNonNull)
    leaf = gql_type if nullable else gql_type.of_type
    if not isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
        return None
    coerce = leaf.coerce_output_value

    def slow(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise _Slow
        try:
            coerced = coerce(value)
        except Exception:
            raise _Slow from None
        if coerced is None:
            raise _Slow
        return coerced

    fast: type | None = None
    convert: Getter | None = None
    if leaf in (GraphQLString, GraphQLID, GraphQLBoolean):
        # Strings (and IDs) and booleans serialise to themselves; Int and Float are range-checked.
        fast = bool if leaf is GraphQLBoolean else str
    elif leaf.serialize in _ISOFORMATS:
        # DateTime (ours, or Strawberry's, and its Date and Time) serialises with the value's
        # isoformat().
        fast, convert = datetime, datetime.isoformat
    elif isinstance(leaf, GraphQLEnumType):
        members = getattr(leaf, "wrapped_cls", None)
        if isinstance(members, EnumMeta):
            # Strawberry's enum type finds a member's name by scanning its values.
            names = {v.value: name for name, v in leaf.values.items()}
            enum_members: list[Any] = list(members)
            by_member = {m: names[m.value] for m in enum_members if m.value in names}
            if len(by_member) == len(members):
                fast = members
                # Names are usually the members' own; reading `_name_` beats hashing a member.
                same = all(names_ == m._name_ for m, names_ in by_member.items())
                convert = attrgetter("_name_") if same else by_member.__getitem__
    definition = _definition(field_def)
    attribute = definition.python_name if definition.base_resolver is None else None
    return _Leaf(read, attribute, fast, convert, slow)


def _leaf_getter(leaf: _Leaf) -> Getter:
    read, fast, convert, slow = leaf.read, leaf.fast, leaf.convert, leaf.slow

    def get(source: Any) -> Any:
        value = read(source)
        if value.__class__ is fast:
            return value if convert is None else convert(value)
        return slow(value)

    return get


def _object(obj_type: GraphQLObjectType, selection: SelectionSetNode | None) -> Getter | None:
    """A function building the response dict of one object for a plain selection, or None."""
    if selection is None:
        return None
    parts: list[tuple[str, _Leaf | Getter]] = []
    keys: set[str] = set()
    for node in selection.selections:
        if not isinstance(node, FieldNode) or node.directives or node.arguments:
            return None
        name = node.name.value
        key = node.alias.value if node.alias else name
        if key in keys:
            return None  # merging repeated keys is the normal path's job
        keys.add(key)
        if name == "__typename":
            type_name = obj_type.name
            parts.append((key, lambda _s, n=type_name: n))  # type: ignore[misc]
            continue
        field_def = obj_type.fields.get(name)
        if field_def is None:
            return None
        part = _leaf(field_def) if node.selection_set is None else _child(field_def, node)
        if part is None:
            return None
        parts.append((key, part))
    return _generate(parts)


def _generate(parts: list[tuple[str, _Leaf | Getter]]) -> Getter:
    """Compile one function that builds the object's dict, with every leaf read inline.

    A page of 50 leads with 10 fields is 500 leaves; a call per leaf is most of their cost.
    The generated source holds only generated names and the Python attribute names of the
    schema's own fields (identifiers, checked); response keys (client-chosen aliases), readers
    and converters are passed in through the function's namespace.
    """
    namespace: dict[str, Any] = {"_Slow": _Slow}
    lines = ["def build(source):", "  try:"]
    for i, (key, part) in enumerate(parts):
        namespace[f"k{i}"] = key
        if not isinstance(part, _Leaf):
            inline: _Inline | None = getattr(part, "inline", None)
            if inline is None or not _plain_name(inline.attribute):
                namespace[f"g{i}"] = part
                lines.append(f"    v{i} = g{i}(source)")
                continue
            # A plain nested object read inline: the same steps as its getter (`_child`).
            namespace[f"b{i}"] = inline.build
            lines.append(f"    v{i} = source.{inline.attribute}")
            lines.append(f"    if v{i} is None:")
            lines.append("      pass" if inline.nullable else "      raise _Slow")
            lines.append("    else:")
            if inline.check is not None:
                namespace[f"t{i}"] = inline.check
                lines.append(f"      if t{i}(v{i}, None) is not True:")
                lines.append("        raise _Slow")
            lines.append(f"      v{i} = b{i}(v{i})")
            continue
        namespace[f"s{i}"] = part.slow
        attr = part.attribute
        if _plain_name(attr):
            lines.append(f"    v{i} = source.{attr}")
        else:
            namespace[f"r{i}"] = part.read
            lines.append(f"    v{i} = r{i}(source)")
        if part.fast is None:
            lines.append(f"    v{i} = s{i}(v{i})")
            continue
        namespace[f"f{i}"] = part.fast
        lines.append(f"    if v{i}.__class__ is not f{i}:")
        lines.append(f"      v{i} = s{i}(v{i})")
        if part.convert is not None:
            namespace[f"c{i}"] = part.convert
            lines.append("    else:")
            lines.append(f"      v{i} = c{i}(v{i})")
    # A missing attribute: let the normal path answer as it would.
    lines += ["  except AttributeError:", "    raise _Slow from None"]
    items = ", ".join(f"k{i}: v{i}" for i in range(len(parts)))
    lines.append(f"  return {{{items}}}")
    exec(compile("\n".join(lines), "<leadflow fast object>", "exec"), namespace)
    return namespace["build"]  # type: ignore[no-any-return]


def _plain_name(attr: str | None) -> bool:
    """Whether `attr` can be written as `source.<attr>` in generated code."""
    return attr is not None and attr.isidentifier() and not keyword.iskeyword(attr)


@dataclass(frozen=True, slots=True)
class _Inline:
    """How `_generate` reads a nested object whose field is a plain attribute, inline."""

    attribute: str
    nullable: bool
    check: Callable[[Any, Any], Any] | None  # the type's is_type_of, if it has one
    build: Getter


def _child(field_def: Any, node: FieldNode) -> Getter | None:
    """A getter for a nested plain object field (e.g. an edge's `node`)."""
    read = _reader(field_def)
    if read is None:
        return None
    gql_type = field_def.type
    nullable = not isinstance(gql_type, GraphQLNonNull)
    inner = gql_type if nullable else gql_type.of_type
    if not isinstance(inner, GraphQLObjectType):
        return None
    build = _object(inner, node.selection_set)
    if build is None:
        return None
    check: Callable[[Any, Any], Any] = inner.is_type_of or (lambda _value, _info: True)

    def get(source: Any) -> Any:
        value = read(source)
        if value is None:
            if nullable:
                return None
            raise _Slow
        if check(value, None) is not True:  # False, or an awaitable: the normal path decides
            raise _Slow
        return build(value)

    definition = _definition(field_def)
    if definition.base_resolver is None:
        get.inline = _Inline(  # type: ignore[attr-defined]
            definition.python_name, nullable, inner.is_type_of, build
        )
    return get


def _list(field_def: Any, node: FieldNode) -> Getter | None:
    """A getter for a plain list of objects (e.g. a connection's `edges`)."""
    if node.directives or node.arguments:
        return None
    read = _reader(field_def)
    if read is None:
        return None
    gql_type = field_def.type
    nullable = not isinstance(gql_type, GraphQLNonNull)
    list_type = gql_type if nullable else gql_type.of_type
    if not isinstance(list_type, GraphQLList):
        return None
    item_type = list_type.of_type
    items_nullable = not isinstance(item_type, GraphQLNonNull)
    item = item_type if items_nullable else item_type.of_type
    if not isinstance(item, GraphQLObjectType):
        return None
    build = _object(item, node.selection_set)
    if build is None:
        return None

    def get(source: Any) -> Any:
        values = read(source)
        if values is None:
            if nullable:
                return None
            raise _Slow
        out: list[Any] = []
        for value in values:
            if value is None:
                if not items_nullable:
                    raise _Slow
                out.append(None)
            else:
                out.append(build(value))
        return out

    return get


# Compiled getters per (parent type, field node). The node is kept in the value so its id is
# never reused while the entry lives; the parser cache hands out the same node per query text.
_CACHE: dict[tuple[str, int], tuple[FieldNode, Getter | None]] = {}
_CACHE_LIMIT = 4096


def _compiled(parent_type: GraphQLObjectType, node: FieldNode) -> Getter | None:
    key = (parent_type.name, id(node))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is node:
        return hit[1]
    getter: Getter | None = None
    field_def = parent_type.fields.get(node.name.value)
    if field_def is not None and not node.directives and not node.arguments:
        if node.selection_set is None:
            leaf = _leaf(field_def)
            getter = None if leaf is None else _leaf_getter(leaf)
        else:
            # A list of plain objects, or one plain object (e.g. a connection's pageInfo).
            getter = _list(field_def, node) or _child(field_def, node)
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = (node, getter)
    return getter


class FastLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with direct paths for plain leaves and plain lists."""

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor for one subscription event, with a memo of its own.

        graphql-core (3.3) makes it a shallow copy that shares the subscription's memo of
        collected subfields, keyed by the identity of each event's freshly collected field
        lists, and keeps those lists alive: the memo gained one entry per event delivered for
        as long as the subscription lived (about 1 KiB each, the soak's RSS drift). A memo per
        event is what a query or mutation gets too.
        """
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        *rest: Any,
    ) -> Any:
        if len(field_details_list) == 1:
            details = field_details_list[0]
            node = getattr(details, "node", details)
            getter = _compiled(parent_type, node)
            if getter is not None:
                try:
                    return getter(source)
                except _Slow:
                    pass
        return super().execute_field(parent_type, source, field_details_list, *rest)
