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
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
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
)
from persistence import tables as t

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"

Expr = ColumnElement[Any]
# The alias of the per-subject interaction aggregates in the scoring SELECT.
GROUPED = "grp"


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
        self.contacts = t.contacts.alias("c")
        self.accounts = t.accounts.alias("a")
        # Per-subject interaction aggregates, by what they compute: (column name, expression).
        self.interactions = t.interactions.alias("i")
        self._grouped_aggs: dict[tuple[Any, ...], tuple[str, Expr]] = {}
        self._rules: tuple[list[Any], list[RuleShape]] | None = None
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
        # A text column holds text or NULL, and every test of NULL text is NULL or false.
        return Operand(present, true(), false(), col, null())

    def json_operand(self, col: Expr, key: str) -> Operand:
        jtype: Expr
        text: Expr
        if self.pg:
            node = col.op("->")(literal(key))
            jtype = func.jsonb_typeof(node)
            text = col.op("->>")(literal(key))
            is_text = jtype == sql_text("string")
            is_number = jtype == sql_text("number")
            number = case((is_number, cast(text, Float)), else_=null())
        else:
            path = '$."' + key + '"'
            jtype = func.json_type(col, path)
            text = func.json_extract(col, path)
            is_text = jtype == sql_text("text")
            is_number = jtype.in_([sql_text("integer"), sql_text("real")])
            number = case((is_number, cast(text, Float)), else_=null())
        present = and_(jtype.is_not(None), jtype != sql_text("null"))
        return Operand(present, is_text, is_number, text, number)

    # ------------------------------------------------------------ comparisons

    def compare(self, test: Comparison, v: Operand, *, two_valued: bool) -> Expr:
        """The comparison, true exactly when Python's is; where Python's is false it may be
        NULL unless `two_valued`. Only NOT needs two values (NOT NULL is NULL); CASE WHEN,
        FILTER, AND and OR all treat NULL as false, so elsewhere the COALESCE is left out."""
        cmp = self._compare(test, v)
        return func.coalesce(cmp, false()) if two_valued else cmp

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
            # v.number is NULL unless the value is a number, so no separate kind test: a
            # comparison with NULL is NULL, which compare() turns into false.
            num = v.number
            if op is Operator.BETWEEN:
                low, high = expected
                return num.between(float(low), float(high))  # evaluates `num` once
            bound = float(expected)
            return {
                Operator.GT: num > bound,
                Operator.GTE: num >= bound,
                Operator.LT: num < bound,
                Operator.LTE: num <= bound,
            }[op]
        candidates = expected if op in LIST_OPS else [expected]
        if isinstance(candidates[0], str):
            hit = self.fold(v.text).in_(sorted({fold(c) for c in candidates}))
            return and_(v.is_text, hit if op in (Operator.EQ, Operator.IN) else not_(hit))
        # As above: NULL for anything but a number, and NOT NULL is NULL too.
        hit = v.number.in_(sorted({float(c) for c in candidates}))
        return hit if op in (Operator.EQ, Operator.IN) else not_(hit)

    def attribute(self, cond: AttributeCondition, *, two_valued: bool) -> Expr:
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
        return self.compare(cond.test, operand, two_valued=two_valued)

    # ------------------------------------------------------------ interactions
    #
    # Interaction aggregates are computed in one GROUP BY over the interactions, once per
    # subject (the lead's contact, or in account mode the account), each as a filtered
    # aggregate: count(*) FILTER (WHERE matches), max(occurred_us) FILTER (...) for the newest
    # match, min(...) for the oldest (FILTER is a little faster than a CASE inside the
    # aggregate; SQLite and PostgreSQL both have it). The leads are LEFT JOINed to that result,
    # so a publish reads the interactions once instead of once per condition and lead. Only
    # the k-th newest match for k > 1 needs the matches in order: a correlated subquery, run
    # only for leads with at least k matches.

    def _matches(self, i: Any, ic: InteractionCondition) -> Expr:
        """Whether interaction row `i` is one `ic` counts (the subject is matched by the join)."""
        conds: list[Expr] = [i.c.type == ic.type.value]
        if ic.name:
            conds.append(self.fold(i.c.name) == fold(ic.name))
        if ic.within_days:
            conds.append(i.c.occurred_us > self.now_us - ic.within_days * DAY_US)
        for p in ic.properties:
            # Inside FILTER (WHERE ...) and under no NOT: NULL counts as false there.
            operand = self.json_operand(i.c.properties, p.key)
            conds.append(self.compare(p.test, operand, two_valued=False))
        return and_(*conds)

    def _grouped(self, key: tuple[Any, ...], build: Any, type_: Any) -> Expr:
        """A reference to a per-subject aggregate column computing `build(i)`."""
        if key not in self._grouped_aggs:
            name = f"g{len(self._grouped_aggs)}"
            self._grouped_aggs[key] = (name, build(self.interactions))
        return literal_column(f"{GROUPED}.{self._grouped_aggs[key][0]}", type_)

    def count(self, ic: InteractionCondition) -> Expr:
        def build(i: Any) -> Expr:
            return func.count().filter(self._matches(i, ic))

        # No row in the grouped result: the subject has no interactions at all.
        return func.coalesce(self._grouped(("count", ic), build, Integer()), 0)

    def kth_newest(self, ic: InteractionCondition, k: int) -> Expr:
        if k == 1:

            def build(i: Any) -> Expr:
                return func.max(i.c.occurred_us).filter(self._matches(i, ic))

            return self._grouped(("newest", ic), build, BigInteger())
        self._ic_index += 1
        i = t.interactions.alias(f"i{self._ic_index}")
        source: Any
        if self.account_mode:
            # A join, not a nested IN (...): correlation to `l` must stay one level deep.
            member = t.contacts.alias(f"m{self._ic_index}")
            source = i.join(member, member.c.id == i.c.contact_id)
            subject = member.c.account_id == self.leads.c.account_id
        else:
            source = i
            subject = i.c.contact_id == self.leads.c.contact_id
        newest = (
            select(i.c.occurred_us)
            .select_from(source)
            .where(subject, self._matches(i, ic))
            .order_by(i.c.occurred_us.desc())
            .limit(1)
            .offset(k - 1)
            .scalar_subquery()
        )
        # Fewer than k matches: no k-th newest, and no need to look.
        return case((self.count(ic) >= k, newest), else_=cast(null(), BigInteger))

    def oldest(self, ic: InteractionCondition) -> Expr:
        def build(i: Any) -> Expr:
            return func.min(i.c.occurred_us).filter(self._matches(i, ic))

        return self._grouped(("oldest", ic), build, BigInteger())

    # ------------------------------------------------------------ conditions and rules

    def holds(self, condition: Condition, *, under_not: bool = False) -> Expr:
        """The condition, for CASE WHEN: true exactly when Python's holds, else false or NULL
        (NULL only outside any NOT, where it acts as false)."""
        if isinstance(condition, AllOf):
            return and_(*(self.holds(c, under_not=under_not) for c in condition.items))
        if isinstance(condition, AnyOf):
            return or_(*(self.holds(c, under_not=under_not) for c in condition.items))
        if isinstance(condition, Not):
            return not_(self.holds(condition.item, under_not=True))
        if isinstance(condition, AttributeCondition):
            return self.attribute(condition, two_valued=under_not)
        if condition.min_count == 1:
            # The newest match is wanted for the flip time anyway: one aggregate, not two.
            return self.kth_newest(condition, 1).is_not(None)
        return self.count(condition) >= condition.min_count

    def _flip(self, ic: InteractionCondition, per_occurrence: bool) -> Expr:
        """When a windowed condition flips (see flip_time): its newest needed match (oldest
        counted, per occurrence) plus the window."""
        assert ic.within_days is not None
        start = self.oldest(ic) if per_occurrence else self.kth_newest(ic, ic.min_count)
        flip: Expr = start + ic.within_days * DAY_US
        return flip

    def flip_time(self, rule: Rule) -> Expr | None:
        """SQL for domain.scoring._Evaluation.flip_time (None when the rule has no window)."""
        times = [self._flip(ic, rule.per_occurrence) for ic in rule.windowed]
        return least(times) if times else None

    def expires_at(self, rule: Rule) -> Expr:
        """SQL for domain.scoring._Evaluation.expires_at of a rule with `tree_expiry`: the
        first windowed condition's flip time after which the condition no longer holds."""
        flips = {id(ic): self._flip(ic, False) for ic in rule.windowed}
        candidates = [
            case(
                # Negated, so built two-valued: NULL never stands for false here.
                (and_(at.is_not(None), not_(self._holds_after(rule.condition, flips, at))), at),
                else_=null(),
            )
            for at in flips.values()
        ]
        return least(candidates)

    def _holds_after(self, condition: Condition, flips: dict[int, Expr], at: Expr) -> Expr:
        """SQL for domain.scoring._Evaluation._holds_after, two-valued."""
        if isinstance(condition, AllOf):
            return and_(*(self._holds_after(c, flips, at) for c in condition.items))
        if isinstance(condition, AnyOf):
            return or_(*(self._holds_after(c, flips, at) for c in condition.items))
        if isinstance(condition, Not):
            return not_(self._holds_after(condition.item, flips, at))
        if isinstance(condition, InteractionCondition) and condition.within_days:
            flip = flips[id(condition)]
            return and_(flip.is_not(None), flip > at)
        return self.holds(condition, under_not=True)

    def rule_columns(self, rule: Rule, n: int) -> tuple[list[Any], RuleShape]:
        """A rule's columns: p<n> (its points when awarded, else NULL), o<n> (occurrences, for
        per-occurrence rules; 1 otherwise) and e<n> (its flip time, for rules with a window)."""
        columns: list[Any] = []
        constant: float | None = None
        if rule.per_occurrence:
            assert isinstance(rule.condition, InteractionCondition)
            count = self.count(rule.condition)
            total = literal(rule.points, Float) * count
            points: Expr = total if rule.max_points is None else clamp(total, rule.max_points)
            awarded = count >= rule.condition.min_count
            columns.append(count.label(f"o{n}"))
        else:
            awarded = self.holds(rule.condition)
            constant = cap(rule.points, rule.max_points)
            points = literal(constant, Float)
        columns.insert(0, case((awarded, points), else_=null()).label(f"p{n}"))
        flip = self.flip_time(rule)
        if flip is not None:
            columns.append(flip.label(f"e{n}"))
        if rule.tree_expiry:  # the breakdown's expiry needs the whole condition
            columns.append(self.expires_at(rule).label(f"x{n}"))
        return columns, RuleShape(n, constant, flip is not None, rule.tree_expiry)

    def compile_rules(self, model: ScoringModel) -> list[RuleShape]:
        """Compile the model's rules (once); the shape of each rule's columns."""
        if self._rules is None:
            columns: list[Any] = []
            shapes: list[RuleShape] = []
            for n, rule in enumerate(model.scoring_rules):
                rule_cols, shape = self.rule_columns(rule, n)
                columns.extend(rule_cols)
                shapes.append(shape)
            self._rules = (columns, shapes)
        return self._rules[1]

    @property
    def grouped_columns(self) -> list[str]:
        """The names of the per-subject aggregate columns the compiled rules refer to."""
        return [name for name, _ in self._grouped_aggs.values()]

    def scores_select(
        self, model: ScoringModel, lead_ids: Sequence[int] | None, grouped: Any = None
    ) -> tuple[Any, list[RuleShape]]:
        """SELECT lead_id, the lead's stage, status_reason and sales_ready, plus each rule's
        columns (see rule_columns) for every scorable lead of this mode, and the shape of each
        rule's columns.

        The leads are joined to their contact, account and per-subject interaction aggregates
        (one GROUP BY over the interactions, see above): `grouped` if given (a table holding
        grouped_select()'s rows, aliased GROUPED), else that GROUP BY as a subquery.
        """
        shapes = self.compile_rules(model)
        assert self._rules is not None
        lead, c, a = self.leads, self.contacts, self.accounts
        source: Any = lead
        if self._grouped_aggs:
            if grouped is None:
                grouped = self.grouped_select(lead_ids).subquery(GROUPED)
            source = source.outerjoin(grouped, self._group_on(lead))
        source = source.outerjoin(c, c.c.id == lead.c.contact_id).outerjoin(
            a, a.c.id == func.coalesce(lead.c.account_id, c.c.account_id)
        )
        # The lead's state too: its score events record it (see LeadScoreRepository).
        state = (lead.c.stage, lead.c.status_reason, lead.c.sales_ready)
        stmt = select(lead.c.id.label("lead_id"), *state, *self._rules[0]).select_from(source)
        stmt = stmt.where(*self._scorable(lead, lead_ids))
        return stmt, shapes

    def _scorable(self, lead: Any, lead_ids: Sequence[int] | None) -> list[Expr]:
        """The leads this mode scores: with a contact, or (account mode) an account only."""
        if self.account_mode:
            where = [lead.c.contact_id.is_(None), lead.c.account_id.is_not(None)]
        else:
            where = [lead.c.contact_id.is_not(None)]
        if lead_ids is not None:
            where.append(lead.c.id.in_(list(lead_ids)))
        return where

    def _group_on(self, lead: Any) -> Expr:
        subject: Expr = lead.c.account_id if self.account_mode else lead.c.contact_id
        return literal_column(f"{GROUPED}.subject_id", BigInteger()) == subject

    def grouped_select(self, lead_ids: Sequence[int] | None) -> Any:
        """The per-subject aggregates (subject_id, then grouped_columns): one GROUP BY over the
        interactions of the subjects, in subject_id order. Call after compile_rules()."""
        i = self.interactions
        aggregates = [expr.label(name) for name, expr in self._grouped_aggs.values()]
        # Only the interactions some aggregate can match: of its types and, when every
        # condition on a type has a window, within the widest one. Type and time are in the
        # index, so the rows of the others are not even read.
        widest: dict[str, int | None] = {}
        for key in self._grouped_aggs:
            ic: InteractionCondition = key[1]
            days = ic.within_days or None
            type_ = ic.type.value
            if type_ not in widest:
                widest[type_] = days
            else:
                known = widest[type_]
                widest[type_] = None if known is None or days is None else max(known, days)
        wanted_rows = or_(
            *(
                i.c.type == type_
                if days is None
                else and_(i.c.type == type_, i.c.occurred_us > self.now_us - days * DAY_US)
                for type_, days in sorted(widest.items())
            )
        )
        li = t.leads.alias("li")
        if self.account_mode:
            member = t.contacts.alias("m")
            subject = member.c.account_id
            wanted = select(li.c.account_id).where(*self._scorable(li, lead_ids))
            stmt = select(subject.label("subject_id"), *aggregates).select_from(
                i.join(member, member.c.id == i.c.contact_id)
            )
            stmt = stmt.where(subject.in_(wanted))
        else:
            subject = i.c.contact_id
            stmt = select(subject.label("subject_id"), *aggregates)
            if lead_ids is not None:
                wanted = select(li.c.contact_id).where(*self._scorable(li, lead_ids))
                stmt = stmt.where(subject.in_(wanted))
        return stmt.where(wanted_rows).group_by(subject)


@dataclass(frozen=True)
class RuleShape:
    """Which columns rule_columns gave rule `n`: constant points (non-per-occurrence rules) or
    an o<n> column, and whether it has an e<n> column."""

    n: int
    constant_points: float | None
    expires: bool
    # An x<n> column: when its points expire, for the breakdown (else e<n> says it).
    exact_expiry: bool = False


def sql_text(value: str) -> Expr:
    """A string constant of ours written into the SQL, not bound: SQLite compares a column
    with a literal faster than with a parameter (about 10% of a publish). Never for values
    that come from users."""
    return literal_column("'" + value.replace("'", "''") + "'", String())


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


def sales_ready(model: ScoringModel, score: Expr) -> Expr:
    """Whether `score` makes a lead sales-ready for this model."""
    threshold = model.sales_ready_threshold
    return score >= threshold if threshold is not None else false()


def score_expressions(
    table: Any, model: ScoringModel, shapes: Sequence[RuleShape], pg: bool
) -> tuple[Expr, Expr, Expr]:
    """score, breakdown (JSON) and next expiry over a table of rule columns."""
    score: Expr = literal(0.0, Float)
    parts: list[Expr] = []
    for shape in shapes:
        n = shape.n
        p = table.c[f"p{n}"]
        e = table.c[f"e{n}"] if shape.expires else None
        if shape.exact_expiry:
            e = table.c[f"x{n}"]
        # Summed in rule order from 0.0, adding 0.0 for a rule not awarded: the same float as
        # domain.scoring.evaluate.
        score = score + func.coalesce(p, literal(0.0, Float))
        parts.append(_pg_entry(table, shape, p, e) if pg else _sqlite_entry(table, shape, p, e))
    if pg:
        breakdown = func.jsonb_build_array(*parts)
    else:
        # JSON text put together by one printf(): much cheaper than json_array() of json()
        # values, or than concatenating.
        breakdown = func.printf(sql_text("[" + ",".join(["%s"] * len(parts)) + "]"), *parts)
    expiry = least([table.c[f"e{s.n}"] for s in shapes if s.expires])
    return score, breakdown, expiry


def _pg_entry(table: Any, shape: RuleShape, p: Expr, e: Expr | None) -> Expr:
    """[points, occurrences, expires_us] or JSON null, as jsonb."""
    occurrences = (
        literal(1, Integer) if shape.constant_points is not None else table.c[f"o{shape.n}"]
    )
    expires = e if e is not None else cast(null(), BigInteger)
    return case((p.is_not(None), func.jsonb_build_array(p, occurrences, expires)), else_=null())


def _sqlite_entry(table: Any, shape: RuleShape, p: Expr, e: Expr | None) -> Expr:
    """[points, occurrences, expires_us] or null, as JSON text."""
    null_text = sql_text("null")
    expires: Expr = null_text if e is None else func.coalesce(e, null_text)
    entry: Expr
    if shape.constant_points is not None:
        # repr() is the shortest text that reads back as the same double.
        head = f"[{shape.constant_points!r},1,"
        if e is None:
            entry = sql_text(head + "null]")
        else:
            entry = func.printf(sql_text(head + "%s]"), expires)
    else:
        # SQLite writes JSON reals with 15 digits; %!.17g keeps every bit of the double.
        entry = func.printf(sql_text("[%!.17g,%d,%s]"), p, table.c[f"o{shape.n}"], expires)
    return case((p.is_(None), null_text), else_=entry)
