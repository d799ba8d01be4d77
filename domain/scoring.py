"""Scoring models: the rule language, the model lifecycle and the Python evaluator.

The same rules are compiled to SQL in `persistence/scoring_sql.py` for set-based work; both must
give identical scores and breakdowns (a property test holds them to it). The semantics, in one
place:

- Text comparisons ignore the case of A-Z (see `fold`); a missing value (null) fails every
  operator except IS_NOT_SET. IS_SET means "not null and not empty".
- Number operators (GT, GTE, LT, LTE, BETWEEN, and EQ/NEQ/IN/NOT_IN with numbers) apply to number
  fields and to custom attributes holding JSON numbers; anything else fails them.
- An interaction condition counts the interactions of the lead's contact — or, for a lead with
  an account and no contact, of every contact of that account — of the given type (and name),
  whose properties match, and that happened less than `withinDays` days ago. It holds when the
  count reaches `minCount`.
- A rule awards its points once when its condition holds, or, with `perOccurrence`, once per
  matching interaction; `maxPoints` caps the size of what it awards (negative points too).
- A contribution with a time window expires when its interactions leave the window; `expires_at`
  is that moment, and `next_expiry` the earliest moment any rule of the model changes.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from domain import lifecycle
from domain.errors import DomainError, Invalid, ValidationErrors
from domain.fields import ACCOUNT_FIELDS, CONTACT_FIELDS, LEAD_FIELDS
from domain.lifecycle import ModelStatus as ModelStatus
from domain.model import Account, Contact, Lead, utcnow

MAX_RULES = 100
MAX_NODES = 200  # condition nodes per rule
MAX_DEPTH = 12
MAX_LIST = 100  # values in an IN list
MAX_WITHIN_DAYS = 3650
MAX_MIN_COUNT = 10_000
MAX_POINTS = 1_000_000.0
# What a rule keeps as the condition the client wrote: bounded however it is padded.
MAX_RAW_DEPTH = 40
MAX_RAW_VALUES = 25_000
DAY_US = 86_400 * 1_000_000  # a day in microseconds


class InteractionType(enum.Enum):
    EMAIL_SENT = "EMAIL_SENT"
    EMAIL_OPENED = "EMAIL_OPENED"
    EMAIL_CLICKED = "EMAIL_CLICKED"
    FORM_SUBMITTED = "FORM_SUBMITTED"
    PAGE_VISITED = "PAGE_VISITED"
    EVENT_REGISTERED = "EVENT_REGISTERED"
    EVENT_ATTENDED = "EVENT_ATTENDED"
    PHONE_CALL = "PHONE_CALL"
    CUSTOM = "CUSTOM"


class ConditionEntity(enum.Enum):
    LEAD = "LEAD"
    CONTACT = "CONTACT"
    ACCOUNT = "ACCOUNT"


class Operator(enum.Enum):
    EQ = "EQ"
    NEQ = "NEQ"
    IN = "IN"
    NOT_IN = "NOT_IN"
    CONTAINS = "CONTAINS"
    NOT_CONTAINS = "NOT_CONTAINS"
    STARTS_WITH = "STARTS_WITH"
    ENDS_WITH = "ENDS_WITH"
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"
    BETWEEN = "BETWEEN"
    IS_SET = "IS_SET"
    IS_NOT_SET = "IS_NOT_SET"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_KEY = re.compile(r"^[\w .\-]{1,100}$")


def fold(text: str) -> str:
    """Case-folding for comparisons: A-Z only, so Python, SQLite and PostgreSQL agree exactly."""
    return text.translate(_ASCII_LOWER)


TEXT_OPS = frozenset(
    {Operator.CONTAINS, Operator.NOT_CONTAINS, Operator.STARTS_WITH, Operator.ENDS_WITH}
)
NUMBER_OPS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE, Operator.BETWEEN})
LIST_OPS = frozenset({Operator.IN, Operator.NOT_IN})
PRESENCE_OPS = frozenset({Operator.IS_SET, Operator.IS_NOT_SET})

# Standard fields a condition may name: API name → (record attribute, "text" | "number").
_LEAD_EXTRA = {
    "source": "source",
    "state": "state",
    "statusReason": "status_reason",
    "stage": "stage",
}
CONDITION_FIELDS: dict[ConditionEntity, dict[str, tuple[str, str]]] = {
    ConditionEntity.LEAD: {
        **{n: (s.attr, "text") for n, s in LEAD_FIELDS.items()},
        **{n: (a, "text") for n, a in _LEAD_EXTRA.items()},
    },
    ConditionEntity.CONTACT: {n: (s.attr, "text") for n, s in CONTACT_FIELDS.items()},
    ConditionEntity.ACCOUNT: {
        n: (s.attr, "number" if s.kind in ("int", "float") else "text")
        for n, s in ACCOUNT_FIELDS.items()
    },
}


# ---------------------------------------------------------------- the rule language


@dataclass(frozen=True, slots=True)
class Comparison:
    """An operator and its (checked) value; the part shared by attribute and property tests."""

    operator: Operator
    value: Any = None  # str | float | tuple of them (IN lists, BETWEEN bounds) | None
    # `compare` specialised to this operator and value once (it runs for every rule of every
    # lead scored); not part of equality.
    passes: Callable[[Any], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passes", _tester(self))


@dataclass(frozen=True, slots=True)
class AttributeCondition:
    entity: ConditionEntity
    field: str  # API name or "attributes.<key>"
    test: Comparison
    custom_key: str | None = dataclasses.field(init=False, repr=False, compare=False)
    # The record attribute of a built-in field (None for custom ones), looked up once.
    attr: str | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.field[len("attributes.") :] if self.field.startswith("attributes.") else None
        object.__setattr__(self, "custom_key", key)
        known = CONDITION_FIELDS.get(self.entity, {}).get(self.field)
        object.__setattr__(self, "attr", known[0] if key is None and known else None)


@dataclass(frozen=True, slots=True)
class PropertyMatch:
    key: str
    test: Comparison


@dataclass(frozen=True, slots=True)
class InteractionCondition:
    type: InteractionType
    name: str | None = None
    within_days: int | None = None
    min_count: int = 1
    properties: tuple[PropertyMatch, ...] = ()
    # Worked out once for the evaluator (not part of equality): the folded name, the window
    # and the property tests as (key, passes) pairs.
    folded_name: str | None = field(init=False, repr=False, compare=False)
    window: timedelta | None = field(init=False, repr=False, compare=False)
    tests: tuple[tuple[str, Callable[[Any], bool]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded_name", fold(self.name) if self.name else None)
        window = timedelta(days=self.within_days) if self.within_days else None
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "tests", tuple((p.key, p.test.passes) for p in self.properties))


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = AllOf | AnyOf | Not | AttributeCondition | InteractionCondition


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # stable within a model; the breakdown refers to it
    name: str
    points: float
    condition: Condition
    per_occurrence: bool = False
    max_points: float | None = None
    raw_condition: Any = None  # the condition as the client wrote it, for display
    # The interaction conditions, depth first, and those with a time window (for expiries);
    # worked out once.
    watches: tuple[InteractionCondition, ...] = field(init=False, repr=False, compare=False)
    windowed: tuple[InteractionCondition, ...] = field(init=False, repr=False, compare=False)
    # Whether the time the rule's points expire needs the whole condition (see expires_at): an
    # `any` or `not` over two or more windowed conditions. Otherwise it is the first flip.
    tree_expiry: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        found = tuple(interaction_conditions(self.condition))
        object.__setattr__(self, "watches", found)
        windowed = tuple(ic for ic in found if ic.within_days)
        object.__setattr__(self, "windowed", windowed)
        branching = _has_any_or_not(self.condition)
        object.__setattr__(
            self, "tree_expiry", not self.per_occurrence and branching and len(windowed) > 1
        )


@dataclass(frozen=True, slots=True)
class Grade:
    name: str
    min_score: float


def _has_any_or_not(condition: Condition) -> bool:
    if isinstance(condition, AnyOf | Not):
        return True
    if isinstance(condition, AllOf):
        return any(_has_any_or_not(c) for c in condition.items)
    return False


def counts_for(ic: InteractionCondition, interaction: Interaction) -> bool:
    """Whether an interaction counts for a condition, its time window aside: the type, the
    name and the property tests."""
    if interaction.type is not ic.type:
        return False
    if ic.folded_name is not None and fold(interaction.name or "") != ic.folded_name:
        return False
    properties = interaction.properties
    return all(passes(properties.get(key)) for key, passes in ic.tests)


def can_change(model: ScoringModel, interaction: Interaction) -> bool:
    """Whether a new interaction can change a model's score for a lead that sees it.

    Every rule sees interactions only through its interaction conditions, so one that counts
    for none of them (its window aside) leaves each rule's outcome, points and expiry as they
    were: a score that still holds stays the model's score (see CurrentScore.holds)."""
    return any(counts_for(ic, interaction) for rule in model.scoring_rules for ic in rule.watches)


# The interactions some evaluations can count: per type, those that happened after a moment,
# or all of them (None); none of a type not named.
InteractionScope = Mapping["InteractionType", datetime | None]


def scope_of(
    models: Iterable[ScoringModel], now: datetime
) -> dict[InteractionType, datetime | None]:
    """What evaluating these models at `now` can count: per type an interaction condition
    names, the interactions inside the widest of their windows, or all of them when one has no
    window (a condition counts nothing else: see _Evaluation.matches)."""
    out: dict[InteractionType, datetime | None] = {}
    for model in models:
        for rule in model.scoring_rules:
            for ic in rule.watches:
                since = now - ic.window if ic.window is not None else None
                if ic.type not in out:
                    out[ic.type] = since
                else:
                    known = out[ic.type]
                    out[ic.type] = None if known is None or since is None else min(known, since)
    return out


def interaction_conditions(condition: Condition) -> list[InteractionCondition]:
    """Every interaction condition in a tree, depth first."""
    if isinstance(condition, InteractionCondition):
        return [condition]
    if isinstance(condition, AllOf | AnyOf):
        return [ic for c in condition.items for ic in interaction_conditions(c)]
    if isinstance(condition, Not):
        return interaction_conditions(condition.item)
    return []


# ---------------------------------------------------------------- parsing (from API JSON)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 3


def _show(value: Any) -> str:
    """A value for an error message: short however big or deep the client made it."""
    return _SHORT.repr(value)


def _too_big(raw: Any) -> str | None:
    """Why a raw JSON value is too big to keep (deep or many values), or None; no recursion."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_RAW_VALUES:
            return f"a condition holds at most {MAX_RAW_VALUES} values"
        if depth > MAX_RAW_DEPTH:
            return f"a condition's JSON nests at most {MAX_RAW_DEPTH} deep"
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
    return None


# Lead fields the sales process and qualification set from the scores: a scoring rule reading
# them would score on its own output (stale until something re-scores the lead, or circular).
# Assignment rules, in the same language, may read them.
PROCESS_FIELDS = frozenset(("stage", "statusReason"))


class _Parser:
    def __init__(self, *, scoring: bool = False) -> None:
        self.nodes = 0
        self.errors: list[DomainError] = []
        self.scoring = scoring  # parsing a scoring rule (see PROCESS_FIELDS)

    def fail(self, message: str, path: list[str]) -> None:
        self.errors.append(Invalid(message, path))

    def number(self, value: Any, path: list[str]) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("expected a number", path)
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer too big for a float
            self.fail("expected a finite number", path)
            return None
        if not math.isfinite(number) or abs(number) > 1e15:
            self.fail("expected a finite number", path)
            return None
        return number

    def scalar(self, value: Any, path: list[str]) -> str | float | None:
        if isinstance(value, bool):
            self.fail(
                "true and false are not compared: test a flag with IS_SET / IS_NOT_SET, or keep "
                "it as text or a number",
                path,
            )
            return None
        if isinstance(value, str):
            if len(value) > 1000:
                self.fail("values are at most 1000 characters", path)
                return None
            return value
        return self.number(value, path)

    def comparison(self, raw: Mapping[str, Any], kind: str, path: list[str]) -> Comparison | None:
        """Check an operator/value pair; kind is "text", "number" or "any" (custom JSON)."""
        try:
            op = Operator(raw.get("operator"))
        except ValueError:
            self.fail(f"unknown operator {_show(raw.get('operator'))}", [*path, "operator"])
            return None
        value = raw.get("value")
        vpath = [*path, "value"]
        if op in PRESENCE_OPS:
            return Comparison(op, None)
        if value is None:
            self.fail(f"{op.value} needs a value", vpath)
            return None
        if op in TEXT_OPS:
            if kind == "number":
                self.fail(f"{op.value} applies to text fields only", [*path, "operator"])
                return None
            if not isinstance(value, str) or not value:
                self.fail(f"{op.value} needs a non-empty string", vpath)
                return None
            return Comparison(op, self.scalar(value, vpath))
        if op in NUMBER_OPS:
            if kind == "text":
                self.fail(f"{op.value} applies to number fields only", [*path, "operator"])
                return None
            if op is Operator.BETWEEN:
                if not isinstance(value, list) or len(value) != 2:
                    self.fail("BETWEEN needs [low, high]", vpath)
                    return None
                low, high = self.number(value[0], vpath), self.number(value[1], vpath)
                if low is None or high is None:
                    return None
                if low > high:
                    self.fail("BETWEEN needs low ≤ high", vpath)
                    return None
                return Comparison(op, (low, high))
            number = self.number(value, vpath)
            return None if number is None else Comparison(op, number)
        values = value if op in LIST_OPS else [value]
        if op in LIST_OPS and (not isinstance(value, list) or not value or len(value) > MAX_LIST):
            self.fail(f"{op.value} needs a list of 1 to {MAX_LIST} values", vpath)
            return None
        checked: list[str | float] = []
        for v in values:
            if kind == "number" and isinstance(v, str):
                self.fail("expected a number", vpath)
                return None
            if kind == "text" and not isinstance(v, str):
                self.fail("expected a string", vpath)
                return None
            s = self.scalar(v, vpath)
            if s is None:
                return None
            checked.append(s)
        kinds = {isinstance(v, str) for v in checked}
        if len(kinds) > 1:
            self.fail("values must be all strings or all numbers", vpath)
            return None
        return Comparison(op, tuple(checked) if op in LIST_OPS else checked[0])

    def condition(self, raw: Any, path: list[str], depth: int) -> Condition | None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.fail(f"a condition has at most {MAX_NODES} parts", path)
            return None
        if depth > MAX_DEPTH:
            self.fail(f"conditions nest at most {MAX_DEPTH} deep", path)
            return None
        if not isinstance(raw, Mapping):
            self.fail("a condition is an object", path)
            return None
        given = [
            k for k in ("all", "any", "not", "attribute", "interaction") if raw.get(k) is not None
        ]
        unknown = set(raw) - {"all", "any", "not", "attribute", "interaction"}
        if unknown or len(given) != 1:
            self.fail("a condition has exactly one of all, any, not, attribute, interaction", path)
            return None
        kind = given[0]
        body = raw[kind]
        sub = [*path, kind]
        if kind in ("all", "any"):
            if not isinstance(body, list) or not body:
                self.fail(f"{kind} needs a non-empty list of conditions", sub)
                return None
            items = [self.condition(c, [*sub, str(i)], depth + 1) for i, c in enumerate(body)]
            if any(i is None for i in items):
                return None
            parts = tuple(i for i in items if i is not None)
            return AllOf(parts) if kind == "all" else AnyOf(parts)
        if kind == "not":
            item = self.condition(body, sub, depth + 1)
            return None if item is None else Not(item)
        if not isinstance(body, Mapping):
            self.fail(f"{kind} is an object", sub)
            return None
        if kind == "attribute":
            return self.attribute(body, sub)
        return self.interaction(body, sub)

    def attribute(self, body: Mapping[str, Any], path: list[str]) -> AttributeCondition | None:
        try:
            entity = ConditionEntity(body.get("entity"))
        except ValueError:
            self.fail(f"unknown entity {_show(body.get('entity'))}", [*path, "entity"])
            return None
        name = body.get("field")
        if not isinstance(name, str):
            self.fail("field must be a string", [*path, "field"])
            return None
        known = CONDITION_FIELDS[entity]
        if self.scoring and entity is ConditionEntity.LEAD and name in PROCESS_FIELDS:
            self.fail(
                f"{name} is set by the sales process and qualification from the scores: a "
                "scoring rule cannot depend on it (an assignment rule can)",
                [*path, "field"],
            )
            return None
        if name.startswith("attributes.") and _KEY.match(name[len("attributes.") :]):
            kind = "any"
        elif name in known:
            kind = known[name][1]
        else:
            allowed = ", ".join(sorted(known))
            self.fail(
                f"'{name}' is not a {entity.value} field; use one of {allowed} or attributes.<key>",
                [*path, "field"],
            )
            return None
        test = self.comparison(body, kind, path)
        return None if test is None else AttributeCondition(entity, name, test)

    def interaction(self, body: Mapping[str, Any], path: list[str]) -> InteractionCondition | None:
        try:
            itype = InteractionType(body.get("type"))
        except ValueError:
            self.fail(f"unknown interaction type {_show(body.get('type'))}", [*path, "type"])
            return None
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
            self.fail("name must be 1 to 200 characters", [*path, "name"])
            return None
        within = body.get("withinDays")
        if within is not None and (
            isinstance(within, bool)
            or not isinstance(within, int)
            or not 1 <= within <= MAX_WITHIN_DAYS
        ):
            self.fail(f"withinDays must be 1 to {MAX_WITHIN_DAYS}", [*path, "withinDays"])
            return None
        min_count = body.get("minCount", 1)
        min_count = 1 if min_count is None else min_count
        if (
            isinstance(min_count, bool)
            or not isinstance(min_count, int)
            or not 1 <= min_count <= MAX_MIN_COUNT
        ):
            self.fail(f"minCount must be 1 to {MAX_MIN_COUNT}", [*path, "minCount"])
            return None
        props_raw = body.get("properties") or []
        if not isinstance(props_raw, list) or len(props_raw) > 20:
            self.fail("properties is a list of at most 20 matches", [*path, "properties"])
            return None
        props: list[PropertyMatch] = []
        for i, p in enumerate(props_raw):
            ppath = [*path, "properties", str(i)]
            key = p.get("key") if isinstance(p, Mapping) else None
            if not isinstance(key, str) or not _KEY.match(key):
                self.fail(
                    "a property key is 1 to 100 letters, digits, spaces, '_', '.' or '-'", ppath
                )
                return None
            test = self.comparison(p, "any", ppath)
            if test is None:
                return None
            props.append(PropertyMatch(key, test))
        return InteractionCondition(
            itype, name.strip() if name else None, within, min_count, tuple(props)
        )


def parse_condition(raw: Any, path: list[str]) -> Condition:
    """A checked condition tree from its API JSON; Invalid (or ValidationErrors) otherwise."""
    too_big = _too_big(raw)
    if too_big is not None:
        raise Invalid(too_big, path)
    parser = _Parser()
    condition = parser.condition(raw, path, 1)
    if parser.errors:
        raise parser.errors[0] if len(parser.errors) == 1 else ValidationErrors(parser.errors)
    assert condition is not None
    return condition


# ---------------------------------------------------------------- the model aggregate


@dataclass(slots=True)
class ScoringModel:
    name: str
    rules: list[Rule]
    description: str | None = None
    sales_ready_threshold: float | None = None
    grades: list[Grade] = field(default_factory=list)
    status: ModelStatus = ModelStatus.DRAFT
    version: int = 0
    id: int = 0
    published_at: datetime | None = None
    stopped_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # The rules of the last published version: stored scores were computed with these, so a
    # breakdown stays explainable while a stopped model is being edited.
    published_rules: list[Rule] | None = None

    def edit(self, definition: ScoringModel) -> None:
        """Replace name, rules, grades and threshold; only a DRAFT or STOPPED model may change."""
        lifecycle.require_editable(self)
        self.name = definition.name
        self.description = definition.description
        self.rules = definition.rules
        self.sales_ready_threshold = definition.sales_ready_threshold
        self.grades = definition.grades
        self.updated_at = utcnow()

    def publish(self) -> None:
        """Make the model LIVE (a new version) with its rules as they are now."""
        if self.status is not ModelStatus.LIVE and not self.rules:
            raise Invalid("a model needs at least one rule to be published", ["id"])
        lifecycle.go_live(self)
        self.published_rules = list(self.rules)

    def stop(self) -> None:
        """Stop the model: it acts no more, and what it did stays as it is."""
        lifecycle.stop(self)

    @property
    def scoring_rules(self) -> list[Rule]:
        """The rules scores are computed with: the published ones, once there are any."""
        return self.published_rules if self.published_rules is not None else self.rules

    def grade_for(self, score: float) -> str | None:
        """The name of the highest grade whose minimum the score reaches."""
        best: Grade | None = None
        for g in self.grades:
            if score >= g.min_score and (best is None or g.min_score > best.min_score):
                best = g
        return best.name if best else None

    def is_sales_ready(self, score: float) -> bool:
        return self.sales_ready_threshold is not None and score >= self.sales_ready_threshold


def build_model(raw: Mapping[str, Any]) -> ScoringModel:
    """A DRAFT model from a ScoringModelInput (API names), checking everything at once."""
    errors: list[DomainError] = []
    name = raw.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        errors.append(Invalid("name must be 1 to 200 characters", ["input", "name"]))
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        errors.append(Invalid("description is a string", ["input", "description"]))
        description = None
    if description is not None and len(description) > 5000:
        errors.append(Invalid("description is at most 5000 characters", ["input", "description"]))
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list) or not all(isinstance(r, Mapping) for r in rules_raw):
        errors.append(Invalid("rules is a list of rules", ["input", "rules"]))
        rules_raw = []
    if len(rules_raw) > MAX_RULES:
        errors.append(Invalid(f"a model has at most {MAX_RULES} rules", ["input", "rules"]))
        rules_raw = []
    rules: list[Rule] = []
    seen_names: set[str] = set()
    for i, r in enumerate(rules_raw):
        path = ["input", "rules", str(i)]
        try:
            rules.append(_build_rule(r, i, path))
        except ValidationErrors as e:
            errors.extend(e.errors)
            continue
        except DomainError as e:
            errors.append(e)
            continue
        if rules[-1].name.lower() in seen_names:
            errors.append(Invalid("rule names must be unique in a model", [*path, "name"]))
        seen_names.add(rules[-1].name.lower())
    threshold = raw.get("salesReadyThreshold")
    parser = _Parser()
    if threshold is not None:
        threshold = parser.number(threshold, ["input", "salesReadyThreshold"])
    grades: list[Grade] = []
    grades_raw = raw.get("grades") or []
    if not isinstance(grades_raw, list) or not all(isinstance(g, Mapping) for g in grades_raw):
        errors.append(Invalid("grades is a list of grades", ["input", "grades"]))
        grades_raw = []
    for i, g in enumerate(grades_raw):
        gname = g.get("name")
        gname = gname.strip() if isinstance(gname, str) else ""
        gmin = parser.number(g.get("minScore"), ["input", "grades", str(i), "minScore"])
        if not gname or len(gname) > 100:
            errors.append(
                Invalid(
                    "a grade needs a name of 1 to 100 characters",
                    ["input", "grades", str(i), "name"],
                )
            )
        elif gmin is not None:
            grades.append(Grade(gname, gmin))
    if len({g.name.lower() for g in grades}) != len(grades):
        errors.append(Invalid("grade names must be unique", ["input", "grades"]))
    if len({g.min_score for g in grades}) != len(grades):
        errors.append(Invalid("two grades have the same minScore", ["input", "grades"]))
    errors.extend(parser.errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    return ScoringModel(
        name=name,
        description=str(description) if description is not None else None,
        rules=rules,
        sales_ready_threshold=threshold,
        grades=sorted(grades, key=lambda g: g.min_score),
    )


def _build_rule(raw: Mapping[str, Any], index: int, path: list[str]) -> Rule:
    parser = _Parser(scoring=True)
    name = raw.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 200:
        parser.fail("name must be 1 to 200 characters", [*path, "name"])
    points = parser.number(raw.get("points"), [*path, "points"])
    if points is not None and abs(points) > MAX_POINTS:
        parser.fail(f"points must be within ±{MAX_POINTS:g}", [*path, "points"])
    max_points = raw.get("maxPoints")
    if max_points is not None:
        max_points = parser.number(max_points, [*path, "maxPoints"])
        if max_points is not None and max_points <= 0:
            parser.fail(
                "maxPoints is a positive cap on the size of the award", [*path, "maxPoints"]
            )
    per_occurrence = bool(raw.get("perOccurrence") or False)
    too_big = _too_big(raw.get("condition"))
    if too_big is not None:
        parser.fail(too_big, [*path, "condition"])
        condition = None
    else:
        condition = parser.condition(raw.get("condition"), [*path, "condition"], 1)
    if per_occurrence and condition is not None and not isinstance(condition, InteractionCondition):
        parser.fail(
            "perOccurrence needs the condition to be one interaction condition",
            [*path, "perOccurrence"],
        )
    if parser.errors:
        raise parser.errors[0] if len(parser.errors) == 1 else ValidationErrors(parser.errors)
    assert condition is not None and points is not None
    return Rule(
        id=f"r{index + 1}",
        name=name,
        points=points,
        condition=condition,
        per_occurrence=per_occurrence,
        max_points=max_points,
        raw_condition=raw.get("condition"),
    )


# ---------------------------------------------------------------- the Python evaluator


@dataclass(frozen=True, slots=True)
class Interaction:
    contact_id: int
    type: InteractionType
    occurred_at: datetime
    name: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0
    idempotency_key: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Contribution:
    rule_id: str
    points: float
    occurrences: int
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: float
    breakdown: tuple[Contribution, ...]
    next_expiry: datetime | None


@dataclass(frozen=True, slots=True)
class Subject:
    """What a lead is scored on: the lead, its contact, its account and their interactions."""

    lead: Lead
    contact: Contact | None
    account: Account | None
    interactions: Sequence[Interaction]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def compare(test: Comparison, value: Any, kind: str) -> bool:
    """Whether `value` passes the test; kind is "text", "number" or "any" (custom JSON)."""
    op, expected = test.operator, test.value
    if op is Operator.IS_SET:
        return value is not None and value != ""
    if op is Operator.IS_NOT_SET:
        return value is None or value == ""
    if value is None:
        return False
    if op in TEXT_OPS:
        if not isinstance(value, str):
            return False
        text, needle = fold(value), fold(str(expected))
        if op is Operator.CONTAINS:
            return needle in text
        if op is Operator.NOT_CONTAINS:
            return needle not in text
        if op is Operator.STARTS_WITH:
            return text.startswith(needle)
        return text.endswith(needle)
    if op in NUMBER_OPS:
        if not _is_number(value):
            return False
        number = float(value)
        if op is Operator.BETWEEN:
            return bool(expected[0] <= number <= expected[1])
        bound = float(expected)
        if op is Operator.GT:
            return number > bound
        if op is Operator.GTE:
            return number >= bound
        if op is Operator.LT:
            return number < bound
        return number <= bound
    candidates = expected if op in LIST_OPS else [expected]
    if isinstance(candidates[0], str):
        if not isinstance(value, str):
            return False
        hit = fold(value) in {fold(c) for c in candidates}
    else:
        if not _is_number(value):
            return False
        hit = float(value) in candidates
    return hit if op in (Operator.EQ, Operator.IN) else not hit


def _tester(test: Comparison) -> Callable[[Any], bool]:
    """`compare(test, value, kind)` as a function of the value alone, with the work on the
    test's side (folding, bounds, candidate sets) done once. Same results as `compare`."""
    op, expected = test.operator, test.value
    try:
        if op is Operator.IS_SET:
            return lambda v: v is not None and v != ""
        if op is Operator.IS_NOT_SET:
            return lambda v: v is None or v == ""
        if op in TEXT_OPS:
            needle = fold(str(expected))
            if op is Operator.CONTAINS:
                return lambda v: isinstance(v, str) and needle in fold(v)
            if op is Operator.NOT_CONTAINS:
                return lambda v: isinstance(v, str) and needle not in fold(v)
            if op is Operator.STARTS_WITH:
                return lambda v: isinstance(v, str) and fold(v).startswith(needle)
            return lambda v: isinstance(v, str) and fold(v).endswith(needle)
        if op in NUMBER_OPS:
            if op is Operator.BETWEEN:
                low, high = expected[0], expected[1]
                return lambda v: _is_number(v) and bool(low <= float(v) <= high)
            bound = float(expected)
            if op is Operator.GT:
                return lambda v: _is_number(v) and float(v) > bound
            if op is Operator.GTE:
                return lambda v: _is_number(v) and float(v) >= bound
            if op is Operator.LT:
                return lambda v: _is_number(v) and float(v) < bound
            return lambda v: _is_number(v) and float(v) <= bound
        candidates = expected if op in LIST_OPS else [expected]
        wanted = op in (Operator.EQ, Operator.IN)
        if isinstance(candidates[0], str):
            folded = frozenset(fold(c) for c in candidates)
            return lambda v: isinstance(v, str) and (fold(v) in folded) == wanted
        numbers = tuple(candidates)
        return lambda v: _is_number(v) and (float(v) in numbers) == wanted
    except (TypeError, ValueError, IndexError, KeyError):
        # A test the parser would not have built: compare it the long way, failing the same.
        return lambda v: compare(test, v, "any")


def _attribute_value(cond: AttributeCondition, subject: Subject) -> tuple[Any, str]:
    entity = cond.entity
    record: Any = (
        subject.lead
        if entity is ConditionEntity.LEAD
        else subject.contact
        if entity is ConditionEntity.CONTACT
        else subject.account
    )
    key = cond.custom_key
    if key is not None:
        return (record.attributes.get(key) if record is not None else None), "any"
    attr, kind = CONDITION_FIELDS[cond.entity][cond.field]
    value = getattr(record, attr) if record is not None else None
    if isinstance(value, enum.Enum):
        value = value.value
    return value, kind


class _Evaluation:
    """One evaluation of one model for one subject at one moment."""

    def __init__(self, subject: Subject, now: datetime) -> None:
        self.subject = subject
        self.now = now
        self._matches: dict[int, list[datetime]] = {}
        # A condition names one type: look only at the interactions of that type.
        self._by_type: dict[InteractionType, list[Interaction]] = {}
        for i in subject.interactions:
            self._by_type.setdefault(i.type, []).append(i)

    def matches(self, ic: InteractionCondition) -> list[datetime]:
        """When the matching in-window interactions happened, newest first."""
        # By identity: hashing the frozen condition on every look-up costs more than matching.
        hit = self._matches.get(id(ic))
        if hit is None:
            hit = []
            window = ic.window
            since = self.now - window if window is not None else None
            for i in self._by_type.get(ic.type, ()):
                if since is not None and i.occurred_at <= since:
                    continue
                if counts_for(ic, i):
                    hit.append(i.occurred_at)
            hit.sort(reverse=True)
            self._matches[id(ic)] = hit
        return hit

    def _value(self, cond: AttributeCondition) -> Any:
        """_attribute_value's value, with the attribute looked up once per condition."""
        entity, subject = cond.entity, self.subject
        record: Any = (
            subject.lead
            if entity is ConditionEntity.LEAD
            else subject.contact
            if entity is ConditionEntity.CONTACT
            else subject.account
        )
        if record is None:
            return None
        key = cond.custom_key
        if key is not None:
            return record.attributes.get(key)
        attr = cond.attr
        if attr is None:
            return _attribute_value(cond, subject)[0]
        value = getattr(record, attr)
        return value.value if isinstance(value, enum.Enum) else value

    def holds(self, condition: Condition) -> bool:
        # The common cases by exact type first (cheaper than a chain of isinstance).
        kind = type(condition)
        if kind is AttributeCondition:
            attribute = cast(AttributeCondition, condition)
            return attribute.test.passes(self._value(attribute))
        if kind is InteractionCondition:
            interaction = cast(InteractionCondition, condition)
            return len(self.matches(interaction)) >= interaction.min_count
        if isinstance(condition, AllOf):
            return all(self.holds(c) for c in condition.items)
        if isinstance(condition, AnyOf):
            return any(self.holds(c) for c in condition.items)
        if isinstance(condition, Not):
            return not self.holds(condition.item)
        if isinstance(condition, AttributeCondition):
            value, _ = _attribute_value(condition, self.subject)
            return condition.test.passes(value)
        return len(self.matches(condition)) >= condition.min_count

    def flip_time(self, rule: Rule) -> datetime | None:
        """When the rule's outcome next changes because interactions leave their window."""
        times: list[datetime] = []
        for ic in rule.windowed:
            hits = self.matches(ic)
            window = ic.window or timedelta(0)  # windowed: never None here
            if rule.per_occurrence:
                if hits:
                    times.append(hits[-1] + window)
            elif len(hits) >= ic.min_count:
                times.append(hits[ic.min_count - 1] + window)
        return min(times) if times else None

    def expires_at(self, rule: Rule) -> datetime | None:
        """When the points a rule with `tree_expiry` awards now stop being awarded, by time
        alone (None: never). Other rules' points expire at their first flip (flip_time); under
        an `any` or `not` over several windowed conditions, one of them leaving its window may
        not change the outcome, so the condition is evaluated at each windowed condition's flip
        time, in order: the first time it no longer holds is when the points expire."""
        flips: dict[int, datetime] = {}
        for ic in rule.windowed:
            hits = self.matches(ic)
            if len(hits) >= ic.min_count:
                flips[id(ic)] = hits[ic.min_count - 1] + (ic.window or timedelta(0))
        for at in sorted(set(flips.values())):
            if not self._holds_after(rule.condition, flips, at):
                return at
        return None

    def _holds_after(self, condition: Condition, flips: dict[int, datetime], at: datetime) -> bool:
        """Whether the condition holds from `at` on, with no new interaction: a windowed
        interaction condition holds while its flip time is later than `at`."""
        if isinstance(condition, AllOf):
            return all(self._holds_after(c, flips, at) for c in condition.items)
        if isinstance(condition, AnyOf):
            return any(self._holds_after(c, flips, at) for c in condition.items)
        if isinstance(condition, Not):
            return not self._holds_after(condition.item, flips, at)
        if isinstance(condition, InteractionCondition) and condition.within_days:
            flip = flips.get(id(condition))
            return flip is not None and flip > at
        return self.holds(condition)


def holds(condition: Condition, subject: Subject, now: datetime) -> bool:
    """Whether a condition of the rule language holds for a subject now (e.g. assignment)."""
    return _Evaluation(subject, now).holds(condition)


def cap(total: float, max_points: float | None) -> float:
    """Limit the size of an award to max_points, keeping its sign."""
    if max_points is None:
        return total
    return max(-max_points, min(max_points, total))


def evaluate(model: ScoringModel, subject: Subject, now: datetime) -> ScoreResult:
    """Score one lead with one model: the total, the per-rule breakdown and the next expiry."""
    run = _Evaluation(subject, now)
    breakdown: list[Contribution] = []
    expiries: list[datetime] = []
    for rule in model.scoring_rules:
        flip = run.flip_time(rule)
        if flip is not None:
            expiries.append(flip)
        if rule.per_occurrence:
            assert isinstance(rule.condition, InteractionCondition)
            count = len(run.matches(rule.condition))
            if count < rule.condition.min_count:
                continue
            points, occurrences = cap(rule.points * count, rule.max_points), count
        elif run.holds(rule.condition):
            points, occurrences = cap(rule.points, rule.max_points), 1
        else:
            continue
        expires = run.expires_at(rule) if rule.tree_expiry else flip
        breakdown.append(Contribution(rule.id, points, occurrences, expires))
    # Summed left to right in rule order, as SQL does, so both give the same float.
    score = 0.0
    for c in breakdown:
        score += c.points
    return ScoreResult(score, tuple(breakdown), min(expiries) if expiries else None)


@dataclass(frozen=True, slots=True)
class CurrentScore:
    """What scoring needs of a lead's stored score for a model: the score, the model version
    that made it, when its first contribution leaves its window, and whether the model found
    the lead sales-ready then (so a lead is marked when it crosses the threshold, not again)."""

    score: float
    model_version: int
    next_expiry: datetime | None
    sales_ready: bool = False

    def holds(self, model: ScoringModel, now: datetime) -> bool:
        """Whether this is still the model's score now, provided nothing it was computed from
        changed since: made by the model's current version, no contribution expired."""
        return self.model_version == model.version and (
            self.next_expiry is None or self.next_expiry > now
        )


@dataclass(frozen=True, slots=True)
class StoredScore:
    """A lead's stored score for one model, with its breakdown in stored form."""

    lead_id: int
    scoring_model_id: int
    model_version: int
    score: float
    sales_ready: bool
    entries: list[Any]  # per published rule: [points, occurrences, expires_us] or None
    next_expiry: datetime | None
    updated_at: datetime


def load_rules(stored: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """Rules from their stored form (conditions are checked again on the way in)."""
    rules: list[Rule] = []
    for i, r in enumerate(stored):
        raw = r["condition"]
        rules.append(
            Rule(
                id=str(r["id"]),
                name=str(r["name"]),
                points=float(r["points"]),
                condition=parse_condition(raw, ["rules", str(i), "condition"]),
                per_occurrence=bool(r.get("perOccurrence")),
                max_points=r.get("maxPoints"),
                raw_condition=raw,
            )
        )
    return rules


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch (exact)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    # Positional: the same value as timedelta(microseconds=us), at a quarter of the cost (it
    # runs for every interaction read for scoring).
    return EPOCH + timedelta(0, 0, us)


def encode_breakdown(model: ScoringModel, result: ScoreResult) -> list[Any]:
    """The stored form: one entry per rule, [points, occurrences, expires_us] or null."""
    by_rule = {c.rule_id: c for c in result.breakdown}
    out: list[Any] = []
    for rule in model.scoring_rules:
        c = by_rule.get(rule.id)
        expires = to_us(c.expires_at) if c and c.expires_at else None
        out.append(None if c is None else [c.points, c.occurrences, expires])
    return out


def decode_breakdown(model: ScoringModel, entries: Sequence[Any]) -> list[Contribution]:
    """Contributions from the stored form, for the rules of the version that made them."""
    out: list[Contribution] = []
    for rule, entry in zip(model.scoring_rules, entries, strict=False):
        if entry is None:
            continue
        points, occurrences, expires = entry
        when = from_us(int(expires)) if expires is not None else None
        out.append(Contribution(rule.id, float(points), int(occurrences), when))
    return out
