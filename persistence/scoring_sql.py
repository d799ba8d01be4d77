"""The scoring rules compiled to SQL (SQLAlchemy Core), for set-based scoring.

Every construct mirrors `domain.scoring` exactly (see its module docstring for the semantics);
the property test in tests/integration/test_scoring_equivalence.py holds the two to it on SQLite
and PostgreSQL. Times are integer microseconds since the epoch, so windows and expiries are the
same integers everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    and_,
    case,
    cast,
    column,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from domain.scoring import (
    CONDITION_FIELDS,
    DAY_US,
    LIST_OPS,
    NUMBER_OPS,
    AllOf,
    AnyOf,
    AttributeCondition,
    Comparison,
    Condition,
    ConditionEntity,
    InteractionCondition,
    Not,
    Operator,
    Rule,
    ScoringModel,
    cap,
    fold,
    interaction_conditions,
)
from persistence import tables as t

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"

Expr = ColumnElement[Any]


@dataclass(frozen=True)
class Operand:
    """A value under test, with its kind worked out in SQL."""

    present: Expr  # not null (and, for JSON, not JSON null)
    is_text: Expr
    is_number: Expr
    text: Expr
    number: Expr


class ScoringCompiler:
    """Compiles one model's rules for one dialect at one moment (`now_us`)."""

    def __init__(self, dialect: str, now_us: int, account_mode: bool) -> None:
        self.pg = dialect == "postgresql"
        self.now_us = now_us
        self.account_mode = account_mode
        self.leads = t.leads.alias("l")
        # Interaction aggregates are computed once per lead in an inner query over `li`, and
        # referenced by name from the rules (a rule may use one count three or four times).
        self.inner = t.leads.alias("li")
        self._aggregates: dict[tuple[Any, ...], tuple[str, Expr]] = {}
        self.contacts = t.contacts.alias("c")
        self.accounts = t.accounts.alias("a")
        self._ic_index = 0

    # ------------------------------------------------------------ operands

    def fold(self, expr: Expr) -> Expr:
        """A-Z only, like domain.scoring.fold."""
        if self.pg:
            return func.translate(expr, _UPPER, _LOWER)
        # SQLite has no translate(); its built-in lower() folds A-Z only, the same thing.
        return func.lower(expr)

    def column_operand(self, col: Expr, kind: str) -> Operand:
        present = col.is_not(None)
        if kind == "number":
            return Operand(present, false(), present, null(), cast(col, Float))
        return Operand(present, present, false(), col, null())

    def json_operand(self, col: Expr, key: str) -> Operand:
        jtype: Expr
        text: Expr
        if self.pg:
            node = col.op("->")(literal(key))
            jtype = func.jsonb_typeof(node)
            text = col.op("->>")(literal(key))
            is_text = jtype == "string"
            is_number = jtype == "number"
            number = case((is_number, cast(text, Float)), else_=null())
        else:
            path = '$."' + key + '"'
            jtype = func.json_type(col, path)
            text = func.json_extract(col, path)
            is_text = jtype == "text"
            is_number = jtype.in_(["integer", "real"])
            number = case((is_number, cast(text, Float)), else_=null())
        present = and_(jtype.is_not(None), jtype != "null")
        return Operand(present, is_text, is_number, text, number)

    # ------------------------------------------------------------ comparisons

    def compare(self, test: Comparison, v: Operand) -> Expr:
        """Two-valued, like Python: a comparison with a missing value is false, never NULL."""
        return func.coalesce(self._compare(test, v), false())

    def _compare(self, test: Comparison, v: Operand) -> Expr:
        op, expected = test.operator, test.value
        is_set = and_(v.present, not_(and_(v.is_text, v.text == "")))
        if op is Operator.IS_SET:
            return is_set
        if op is Operator.IS_NOT_SET:
            return not_(is_set)
        if op in (
            Operator.CONTAINS,
            Operator.NOT_CONTAINS,
            Operator.STARTS_WITH,
            Operator.ENDS_WITH,
        ):
            text = self.fold(v.text)
            needle = fold(str(expected))
            n = len(needle)
            if op in (Operator.CONTAINS, Operator.NOT_CONTAINS):
                position = func.strpos(text, needle) if self.pg else func.instr(text, needle)
                hit = position > 0
                return and_(v.is_text, hit if op is Operator.CONTAINS else not_(hit))
            if op is Operator.STARTS_WITH:
                return and_(v.is_text, func.substr(text, 1, n) == needle)
            length = func.length(text)
            return and_(v.is_text, length >= n, func.substr(text, length - n + 1) == needle)
        if op in NUMBER_OPS:
            num = v.number
            if op is Operator.BETWEEN:
                low, high = expected
                return and_(v.is_number, num >= float(low), num <= float(high))
            bound = float(expected)
            cmp = {
                Operator.GT: num > bound,
                Operator.GTE: num >= bound,
                Operator.LT: num < bound,
                Operator.LTE: num <= bound,
            }[op]
            return and_(v.is_number, cmp)
        candidates = expected if op in LIST_OPS else [expected]
        if isinstance(candidates[0], str):
            hit = self.fold(v.text).in_(sorted({fold(c) for c in candidates}))
            kind_ok = v.is_text
        else:
            hit = v.number.in_(sorted({float(c) for c in candidates}))
            kind_ok = v.is_number
        return and_(kind_ok, hit if op in (Operator.EQ, Operator.IN) else not_(hit))

    def attribute(self, cond: AttributeCondition) -> Expr:
        record = {
            ConditionEntity.LEAD: self.leads,
            ConditionEntity.CONTACT: self.contacts,
            ConditionEntity.ACCOUNT: self.accounts,
        }[cond.entity]
        key = cond.custom_key
        if key is not None:
            operand = self.json_operand(record.c.attributes, key)
        else:
            attr, kind = CONDITION_FIELDS[cond.entity][cond.field]
            operand = self.column_operand(record.c[attr], kind)
        # A missing contact or account reads as null everywhere: the outer join gives that.
        return self.compare(cond.test, operand)

    # ------------------------------------------------------------ interactions

    def _matching(self, ic: InteractionCondition) -> tuple[Any, Any, Expr]:
        """(FROM clause, interactions alias, WHERE) for the interactions `ic` counts."""
        self._ic_index += 1
        i = t.interactions.alias(f"i{self._ic_index}")
        if self.account_mode:
            # A join, not a nested IN (...): correlation to `l` must stay one level deep.
            member = t.contacts.alias(f"m{self._ic_index}")
            source: Any = i.join(member, member.c.id == i.c.contact_id)
            subject = member.c.account_id == self.inner.c.account_id
        else:
            source = i
            subject = i.c.contact_id == self.inner.c.contact_id
        conds: list[Expr] = [subject, i.c.type == ic.type.value]
        if ic.name:
            conds.append(self.fold(i.c.name) == fold(ic.name))
        if ic.within_days:
            conds.append(i.c.occurred_us > self.now_us - ic.within_days * DAY_US)
        for p in ic.properties:
            conds.append(self.compare(p.test, self.json_operand(i.c.properties, p.key)))
        return source, i, and_(*conds)

    def _aggregate(self, key: tuple[Any, ...], build: Any, type_: Any) -> Expr:
        """A reference to an inner-query column computing `build()` once per lead."""
        if key not in self._aggregates:
            self._aggregates[key] = (f"agg_{len(self._aggregates)}", build())
        return column(self._aggregates[key][0], type_)

    def count(self, ic: InteractionCondition) -> Expr:
        def build() -> Expr:
            source, _, where = self._matching(ic)
            return select(func.count()).select_from(source).where(where).scalar_subquery()

        return self._aggregate(("count", ic), build, Integer())

    def kth_newest(self, ic: InteractionCondition, k: int) -> Expr:
        def build() -> Expr:
            source, i, where = self._matching(ic)
            stmt = select(i.c.occurred_us).select_from(source).where(where)
            return stmt.order_by(i.c.occurred_us.desc()).limit(1).offset(k - 1).scalar_subquery()

        return self._aggregate(("kth", ic, k), build, BigInteger())

    def oldest(self, ic: InteractionCondition) -> Expr:
        def build() -> Expr:
            source, i, where = self._matching(ic)
            stmt = select(func.min(i.c.occurred_us)).select_from(source).where(where)
            return stmt.scalar_subquery()

        return self._aggregate(("oldest", ic), build, BigInteger())

    # ------------------------------------------------------------ conditions and rules

    def holds(self, condition: Condition) -> Expr:
        if isinstance(condition, AllOf):
            return and_(*(self.holds(c) for c in condition.items))
        if isinstance(condition, AnyOf):
            return or_(*(self.holds(c) for c in condition.items))
        if isinstance(condition, Not):
            return not_(self.holds(condition.item))
        if isinstance(condition, AttributeCondition):
            return self.attribute(condition)
        return self.count(condition) >= condition.min_count

    def flip_time(self, rule: Rule) -> Expr:
        """SQL for domain.scoring._Evaluation.flip_time (NULL when nothing expires)."""
        times: list[Expr] = []
        for ic in interaction_conditions(rule.condition):
            if not ic.within_days:
                continue
            start = self.oldest(ic) if rule.per_occurrence else self.kth_newest(ic, ic.min_count)
            times.append(start + ic.within_days * DAY_US)
        return least(times)

    def rule_columns(self, rule: Rule, n: int) -> list[Any]:
        """awarded, points, occurrences and flip time of one rule, as labelled columns."""
        if rule.per_occurrence:
            assert isinstance(rule.condition, InteractionCondition)
            count = self.count(rule.condition)
            awarded = count >= rule.condition.min_count
            total = literal(rule.points, Float) * count
            points: Expr = total if rule.max_points is None else clamp(total, rule.max_points)
            occurrences: Expr = count
        else:
            awarded = self.holds(rule.condition)
            points = literal(cap(rule.points, rule.max_points), Float)
            occurrences = literal(1, Integer)
        return [
            case((awarded, 1), else_=0).label(f"w{n}"),
            points.label(f"p{n}"),
            occurrences.label(f"o{n}"),
            self.flip_time(rule).label(f"e{n}"),
        ]

    def scores_select(self, model: ScoringModel, lead_ids: Sequence[int] | None) -> Any:
        """SELECT lead_id plus per-rule columns for every scorable lead of this mode.

        Two layers: an inner query picks the leads and computes each distinct interaction
        aggregate once (OFFSET 0 keeps it from being inlined); the outer one joins the lead's
        contact and account and derives every rule's columns from those aggregates.
        """
        rule_columns: list[Any] = []
        for n, rule in enumerate(model.scoring_rules):
            rule_columns.extend(self.rule_columns(rule, n))
        li = self.inner
        inner = select(
            li.c.id.label("lead_id"), *(e.label(name) for name, e in self._aggregates.values())
        )
        if self.account_mode:
            inner = inner.where(li.c.contact_id.is_(None), li.c.account_id.is_not(None))
        else:
            inner = inner.where(li.c.contact_id.is_not(None))
        if lead_ids is not None:
            inner = inner.where(li.c.id.in_(list(lead_ids)))
        aggregates = inner.offset(0).subquery("agg")
        lead, c, a = self.leads, self.contacts, self.accounts
        source = (
            aggregates.join(lead, lead.c.id == aggregates.c.lead_id)
            .outerjoin(c, c.c.id == lead.c.contact_id)
            .outerjoin(a, a.c.id == func.coalesce(lead.c.account_id, c.c.account_id))
        )
        return select(lead.c.id.label("lead_id"), *rule_columns).select_from(source)


def clamp(expr: Expr, limit: float) -> Expr:
    """SQL for domain.scoring.cap."""
    return case(
        (expr > limit, literal(limit, Float)), (expr < -limit, literal(-limit, Float)), else_=expr
    )


# Larger than any time in microseconds: stands in for NULL inside min()/least().
_NO_TIME = 2**62


class smallest(FunctionElement[Any]):
    """The smallest of its arguments: LEAST() on PostgreSQL, multi-argument min() on SQLite."""

    inherit_cache = True
    type = BigInteger()


@compiles(smallest)
def _smallest_default(element: smallest, compiler: Any, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


@compiles(smallest, "sqlite")
def _smallest_sqlite(element: smallest, compiler: Any, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


def least(values: Sequence[Expr]) -> Expr:
    """The smallest non-null value (NULL when all are null), the same on both dialects.

    Written as NULLIF(min(COALESCE(v, big), ...), big) so the SQL grows linearly with the
    number of values (a CASE chain would repeat each partial result and grow exponentially).
    """
    if not values:
        return cast(null(), BigInteger)  # typed, or PostgreSQL reads the column as text
    if len(values) == 1:
        return values[0]
    filled = [func.coalesce(v, _NO_TIME) for v in values]
    return func.nullif(smallest(*filled), _NO_TIME)


def score_expressions(table: Any, model: ScoringModel, pg: bool) -> tuple[Expr, Expr, Expr, Expr]:
    """score, sales_ready, breakdown (JSON) and next expiry over a table of rule columns."""
    score: Expr = literal(0.0, Float)
    parts: list[Expr] = []
    for n in range(len(model.scoring_rules)):
        w, p, o, e = (table.c[f"{k}{n}"] for k in "wpoe")
        score = score + case((w == 1, p), else_=literal(0.0, Float))
        entry: Expr
        if pg:
            entry = case((w == 1, func.jsonb_build_array(p, o, e)), else_=null())
        else:
            # SQLite writes JSON reals with 15 digits; %!.17g keeps every bit of the double.
            exact = func.json(func.printf("%!.17g", p))
            entry = func.json(case((w == 1, func.json_array(exact, o, e)), else_=null()))
        parts.append(entry)
    breakdown = func.jsonb_build_array(*parts) if pg else func.json_array(*parts)
    threshold = model.sales_ready_threshold
    ready = score >= threshold if threshold is not None else false()
    expiry = least([table.c[f"e{n}"] for n in range(len(model.scoring_rules))])
    return score, ready, breakdown, expiry
