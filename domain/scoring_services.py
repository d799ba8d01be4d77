"""Scoring use cases: interactions in, scores out, models through their lifecycle."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import audit, sales
from domain.assignment import assign_by_rules, assign_ready
from domain.errors import Conflict, DomainError, Invalid, NotFound
from domain.events import lead_snapshot
from domain.features import require_lead_management
from domain.fields import check_json_object, normalize_email
from domain.lifecycle import ModelStatus
from domain.model import Account, Contact, Feature, Lead, LeadState, utcnow
from domain.ports import UnitOfWork, UnitOfWorkFactory
from domain.qualification_services import qualify_lead, qualify_leads
from domain.scoring import (
    Interaction,
    InteractionType,
    ScoreResult,
    ScoringModel,
    build_model,
    can_change,
    evaluate,
    scope_of,
)
from domain.subjects import subjects_for

MAX_BATCH = 1000
_SM = audit.AuditEntityType.SCORING_MODEL
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_FUTURE = timedelta(days=1)
# Re-score this many leads or more with the SQL evaluator. Below it, the Python evaluator with
# bulk reads and writes is faster: it evaluates only the models the new interactions can
# change, reads only the interactions those count, while the set-based statements cost a fixed
# ~60 ms per model. Measured on SQLite (3 models of 10 rules, 1,000 interactions re-scoring ~900
# leads per transaction): Python 4,416 interactions/s, set-based 3,510/s.
SET_BASED_FROM = 1000


async def _after_set_scoring(uow: UnitOfWork, lead_ids: Sequence[int], now: datetime) -> None:
    """What follows set-based scoring in its transaction: qualification, then the process."""
    await qualify_leads(uow, lead_ids, now)
    await uow.leads.follow_process(lead_ids, now)
    await assign_ready(uow, lead_ids, now)


# ---------------------------------------------------------------- scoring models


async def _model(uow: UnitOfWork, id_: int) -> ScoringModel:
    model = await uow.scoring_models.get(id_, for_update=True)
    if model is None:
        raise NotFound("no scoring model with this id", ["id"])
    return model


async def create_scoring_model(uow: UnitOfWork, raw: Mapping[str, Any]) -> ScoringModel:
    """A new DRAFT model, checked in full."""
    await require_lead_management(uow)
    model = await uow.scoring_models.add(build_model(raw))
    await audit.record(uow, "create", _SM, model.id, None, audit.scoring_model(model))
    return model


async def update_scoring_model(uow: UnitOfWork, id_: int, raw: Mapping[str, Any]) -> ScoringModel:
    """Replace a DRAFT or STOPPED model's definition (a LIVE one is a CONFLICT)."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    before = audit.scoring_model(model)
    model.edit(build_model(raw))
    await uow.scoring_models.save(model)
    await audit.record(uow, "update", _SM, model.id, before, audit.scoring_model(model))
    return model


async def publish_scoring_model(uow: UnitOfWork, id_: int, now: datetime) -> ScoringModel:
    """Make a model LIVE (a new version) and score every scorable lead with it, set-based."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    before = audit.scoring_model(model)
    model.publish()
    await uow.scoring_models.save(model)
    await audit.record(uow, "publish", _SM, model.id, before, audit.scoring_model(model))
    await uow.scores.rescore_all(model, now)
    # No LIVE qualification model can use a model that was not LIVE: only the process follows.
    # A first publish (version 1) replaces no earlier scores of the model.
    await uow.leads.follow_process(None, now, scored_by=model.id, first_scores=model.version == 1)
    await assign_ready(uow, None, now)
    return model


async def stop_scoring_model(uow: UnitOfWork, id_: int) -> ScoringModel:
    """Stop a LIVE model; its scores stay frozen as they are.

    Not while a LIVE qualification model uses it: that model would qualify on frozen scores.
    """
    await require_lead_management(uow)
    model = await _model(uow, id_)
    users = [q.name for q in await uow.qualification_models.live() if id_ in q.scoring_model_ids]
    if users:
        names = ", ".join(f"'{n}'" for n in users)
        raise Conflict(
            f"LIVE qualification models use this scoring model: {names}; stop them first",
            ["id"],
        )
    before = audit.scoring_model(model)
    model.stop()
    await uow.scoring_models.save(model)
    await audit.record(uow, "stop", _SM, model.id, before, audit.scoring_model(model))
    return model


async def delete_scoring_model(uow: UnitOfWork, id_: int) -> int:
    """Delete a model that is not LIVE, with its scores."""
    await require_lead_management(uow)
    model = await _model(uow, id_)
    if model.status is ModelStatus.LIVE:
        raise Conflict("a LIVE model cannot be deleted; stop it first", ["id"])
    users = await uow.qualification_models.using(id_)
    if users:
        names = ", ".join(f"'{q.name}'" for q in users)
        raise Conflict(
            f"qualification models use this scoring model: {names}; change or delete them first",
            ["id"],
        )
    await uow.scoring_models.delete(id_)
    await audit.record(uow, "delete", _SM, id_, audit.scoring_model(model), None)
    return id_


# ---------------------------------------------------------------- interactions


@dataclass(frozen=True, slots=True)
class InteractionInput:
    type: InteractionType
    contact_id: int | None = None
    contact_email: str | None = None
    name: str | None = None
    occurred_at: datetime | None = None
    properties: Any = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class _Contacts:
    """The contacts a batch names, looked up with one query per kind of reference."""

    by_id: Mapping[int, Any]
    by_email: Mapping[str, Any]


async def _email_ids(uow: UnitOfWork, items: Sequence[InteractionInput]) -> dict[str, int]:
    """The ids of the contacts the items name by email (normalised email → id)."""
    emails = sorted({normalize_email(i.contact_email) for i in items if i.contact_email})
    found = await uow.contacts.find_many("email", emails) if emails else []
    return {c.email: c.id for c in found if c.email}


def _resolve(
    item: InteractionInput, contacts: _Contacts, path: list[str], now: datetime
) -> Interaction:
    """Check one input and find its contact; raises with `path` in the field."""
    if (item.contact_id is None) == (item.contact_email is None):
        raise Invalid("give exactly one of contactId and contactEmail", path)
    if item.contact_id is not None:
        contact = contacts.by_id.get(item.contact_id)
        if contact is None:
            raise NotFound("no contact with this id", [*path, "contactId"])
    else:
        email = normalize_email(item.contact_email or "")
        contact = contacts.by_email.get(email)
        if contact is None:
            raise NotFound(f"no contact with email {email!r}", [*path, "contactEmail"])
    name = item.name.strip() if item.name else None
    if item.type is InteractionType.CUSTOM and not name:
        raise Invalid("a CUSTOM interaction needs a name", [*path, "name"])
    if name is not None and len(name) > 200:
        raise Invalid("name is at most 200 characters", [*path, "name"])
    properties = check_json_object(
        item.properties if item.properties is not None else {},
        [*path, "properties"],
        "properties",
        MAX_PROPERTIES_BYTES,
    )
    occurred = item.occurred_at or now
    if occurred.tzinfo is None or occurred.utcoffset() is None:
        raise Invalid(
            "occurredAt needs a timezone (ISO 8601, e.g. 2026-01-01T10:00:00Z)",
            [*path, "occurredAt"],
        )
    if occurred > now + MAX_FUTURE:
        raise Invalid("occurredAt is more than a day in the future", [*path, "occurredAt"])
    key = item.idempotency_key
    if key is not None and (not key.strip() or len(key) > 200):
        raise Invalid("idempotencyKey is 1 to 200 characters", [*path, "idempotencyKey"])
    return Interaction(
        contact_id=contact.id,
        type=item.type,
        occurred_at=occurred,
        name=name,
        properties=properties,
        idempotency_key=key,
        created_at=now,
    )


def _same_interaction(stored: Interaction, again: Interaction) -> bool:
    """Whether a retry with an idempotency key sends the interaction first recorded with it:
    the same contact, type, name and properties (its time may be the server's own, then)."""
    return (stored.contact_id, stored.type, stored.name, dict(stored.properties)) == (
        again.contact_id,
        again.type,
        again.name,
        dict(again.properties),
    )


@dataclass(slots=True)
class RecordResult:
    interactions: list[Interaction]
    errors: list[DomainError]


async def record_interactions(
    uow: UnitOfWork,
    items: Sequence[InteractionInput],
    now: datetime | None = None,
    *,
    batch: bool = True,
) -> RecordResult:
    """Record interactions and re-score the leads they affect, in the caller's transaction.

    Items with problems are reported (their index in the error's field) and skipped; the rest
    are recorded. A repeated idempotency key returns the interaction first recorded with it.
    """
    if len(items) > MAX_BATCH:
        raise Invalid(f"at most {MAX_BATCH} interactions per call", ["inputs"])
    (result,) = await record_calls(uow, [(items, batch)], now)
    return result


async def record_calls(
    uow: UnitOfWork,
    calls: Sequence[tuple[Sequence[InteractionInput], bool]],
    now: datetime | None = None,
) -> list[RecordResult]:
    """`record_interactions` for several calls at once: one result per (items, batch) call.

    The calls share the look-ups, the inserts and the re-scoring (each affected lead is scored
    once, with every call's interactions); each gets its own interactions and errors, with the
    paths it would have had alone.
    """
    now = now or utcnow()
    named = [item for items, _ in calls for item in items]
    email_ids = await _email_ids(uow, named)
    ids = sorted({i.contact_id for i in named if i.contact_id is not None} | {*email_ids.values()})
    models = await _live_models(uow)
    # The leads these contacts' interactions re-score are locked first, then the contacts are
    # read (with their accounts): whatever changed them and committed before is seen, and
    # nothing scored-on changes until this transaction ends. Leads of contacts that end up
    # with no new interaction are locked for nothing, which is harmless.
    leads = await uow.leads.lock_for_contacts(ids) if models and ids else []
    by_id, accounts = await uow.contacts.get_many_with_accounts(ids) if ids else ({}, {})
    by_email = {email: by_id[i] for email, i in email_ids.items() if i in by_id}
    contacts = _Contacts(by_id, by_email)
    results: list[RecordResult] = []
    checked_calls: list[list[Interaction | None]] = []
    for items, batch in calls:
        result = RecordResult([], [])
        checked: list[Interaction | None] = []
        for index, item in enumerate(items):
            path = ["inputs", str(index)] if batch else ["input"]
            try:
                checked.append(_resolve(item, contacts, path, now))
            except DomainError as e:
                result.errors.append(e)
                checked.append(None)
        results.append(result)
        checked_calls.append(checked)
    # Without an idempotency key there is nothing to look up: insert them in one go.
    plain = [
        i
        for checked in checked_calls
        for i in checked
        if i is not None and i.idempotency_key is None
    ]
    stored_plain = iter(await uow.interactions.add_many(plain))
    new: list[Interaction] = []  # the interactions stored now (not those a key found)
    for (_, batch), result, checked in zip(calls, results, checked_calls, strict=True):
        for index, interaction in enumerate(checked):
            if interaction is None:
                continue
            if interaction.idempotency_key is None:
                stored, created = next(stored_plain), True
            else:
                stored, created = await uow.interactions.add(interaction)
                if not created and not _same_interaction(stored, interaction):
                    path = ["inputs", str(index)] if batch else ["input"]
                    result.errors.append(
                        Conflict(
                            "this idempotencyKey was used for another interaction (another "
                            "contact, type, name or properties)",
                            [*path, "idempotencyKey"],
                        )
                    )
                    continue
            result.interactions.append(stored)
            if created:
                new.append(stored)
    touched = {i.contact_id for i in new}
    if models and touched:
        # The leads of the contacts with new interactions: their own, and their accounts' leads
        # that have no contact (what LeadRepository.lock_for_contacts found for all of them).
        pooled = {by_id[c].account_id for c in touched if by_id[c].account_id is not None}
        affected = [
            lead
            for lead in leads
            if lead.contact_id in touched or (lead.contact_id is None and lead.account_id in pooled)
        ]
        if len(affected) >= SET_BASED_FROM:
            for model in models:
                await uow.scores.rescore_all(model, now, [lead.id for lead in affected])
            await _after_set_scoring(uow, [lead.id for lead in affected], now)
        else:
            await _score(uow, affected, models, now, (by_id, accounts), new)
    return results


@dataclass(slots=True)
class _Call:
    items: Sequence[InteractionInput]
    batch: bool
    done: asyncio.Future[RecordResult]


class InteractionRecorder:
    """Records the interactions of concurrent calls together, in shared transactions.

    Most of what recording costs is per statement, not per interaction, and writers queue up
    anyway (SQLite has a single writer). So the calls waiting when a transaction starts are
    recorded together in it (group commit), up to `max_items` interactions: each call still
    gets exactly its own interactions and errors, and returns once that transaction committed.

    Up to `parallel` transactions run at once, each taking the calls queued at the moment it
    started: on PostgreSQL they run side by side; on SQLite they wait for the write lock, and
    the one that gets it takes whatever queued up meanwhile. If a shared transaction fails,
    each of its calls is run again alone, so one call's failure never becomes another's.
    """

    def __init__(self, uow: UnitOfWorkFactory, max_items: int = 500, parallel: int = 4) -> None:
        self._uow = uow
        self._max_items = max_items
        self._parallel = parallel
        self._queue: deque[_Call] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        # Workers that will take the queued calls when their transaction starts: while there
        # is one, new calls wait for it rather than start another transaction.
        self._starting = 0

    async def record(self, items: Sequence[InteractionInput], *, batch: bool) -> RecordResult:
        """Record one call's interactions (see `record_interactions`) once committed."""
        if len(items) > MAX_BATCH:
            raise Invalid(f"at most {MAX_BATCH} interactions per call", ["inputs"])
        loop = asyncio.get_running_loop()
        call = _Call(items, batch, loop.create_future())
        self._queue.append(call)
        if self._starting == 0 and len(self._workers) < self._parallel:
            self._starting += 1
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await call.done

    def _take(self) -> list[_Call]:
        """The queued calls, oldest first, up to max_items interactions (at least one call)."""
        group: list[_Call] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].items) <= self._max_items):
            call = self._queue.popleft()
            if not call.done.done():  # a caller that gave up (cancelled) is skipped
                group.append(call)
                size += len(call.items)
        return group

    async def _work(self) -> None:
        """Run transactions for the queued calls until none are left, or until another worker
        is about to take them (this worker counts in `_starting` when it begins)."""
        while True:
            await self._transaction()
            if not self._queue or self._starting > 0:
                return
            self._starting += 1

    async def _transaction(self) -> None:
        """Record the calls queued when a transaction starts, or each alone if it fails."""
        group: list[_Call] = []
        starting = True
        try:
            async with self._uow() as uow:
                self._starting -= 1
                starting = False
                group = self._take()  # on SQLite: once this transaction has the write lock
                if not group:
                    return
                results = await record_calls(uow, [(c.items, c.batch) for c in group])
                await uow.commit()
        except Exception as e:
            error = e  # handled below, once the failed transaction is over
        except BaseException:
            for call in group:
                call.done.cancel()
            raise
        else:
            for call, result in zip(group, results, strict=True):
                if not call.done.done():
                    call.done.set_result(result)
            return
        finally:
            if starting:
                self._starting -= 1
        # The transaction failed, or could not even start: each call on its own.
        await self._alone(group or self._take(), error)

    async def _alone(self, group: list[_Call], error: Exception) -> None:
        if len(group) == 1:
            if not group[0].done.done():
                group[0].done.set_exception(error)
            return
        for call in group:
            try:
                async with self._uow() as uow:
                    result = await record_calls(uow, [(call.items, call.batch)])
                    await uow.commit()
            except Exception as e:
                if not call.done.done():
                    call.done.set_exception(e)
            except BaseException:
                call.done.cancel()
                raise
            else:
                if not call.done.done():
                    call.done.set_result(result[0])


# ---------------------------------------------------------------- re-scoring


async def _live_models(uow: UnitOfWork) -> list[ScoringModel]:
    """The models that score now: the LIVE ones, when lead management is on."""
    return await uow.scoring_models.live(if_enabled=Feature.LEAD_MANAGEMENT)


async def rescore_everything(uow: UnitOfWork, now: datetime) -> int:
    """Score every lead with every LIVE model, set-based, and what follows (qualification, the
    process, assignment): lead management was turned back on, so what was recorded or changed
    while it was off counts now. Returns how many models scored."""
    models = await _live_models(uow)
    if not models:
        return 0
    await uow.scores.drop_unscorable(None)
    for model in models:
        await uow.scores.rescore_all(model, now)
    for qualifying in await uow.qualification_models.live():
        await uow.qualification_models.apply(qualifying, now)
    await uow.leads.follow_process(None, now)
    await assign_ready(uow, None, now)
    return len(models)


async def rescore_for_contacts(uow: UnitOfWork, contact_ids: Sequence[int], now: datetime) -> None:
    """Re-score the leads whose score depends on these contacts' interactions."""
    if not contact_ids:
        return
    models = await _live_models(uow)
    if not models:
        return
    # Locked in id order by the same statement that reads them (see rescore_leads).
    leads = await uow.leads.lock_for_contacts(contact_ids)
    if len(leads) >= SET_BASED_FROM:
        for model in models:
            await uow.scores.rescore_all(model, now, [lead.id for lead in leads])
        await _after_set_scoring(uow, [lead.id for lead in leads], now)
        return
    await _score(uow, leads, models, now)


async def rescore_leads(
    uow: UnitOfWork,
    lead_ids: Sequence[int],
    now: datetime | None = None,
    *,
    reopened: bool = False,
) -> int:
    """Score these leads with every LIVE model (Python evaluator), recording events.

    Leads are locked in id order first, so concurrent re-scorings of one lead queue up and each
    sees the interactions committed before it: no lost update, no deadlock.
    """
    now = now or utcnow()
    if not lead_ids:
        return 0
    models = await _live_models(uow)
    if not models:
        return 0
    ids = sorted(set(lead_ids))
    if len(ids) >= SET_BASED_FROM:
        # Many leads (an account's leads, a big expiry sweep): the SQL evaluator, a few
        # statements per model whatever the number of leads. Same locks, same order.
        await uow.leads.lock_many(ids)
        await uow.scores.drop_unscorable(ids)  # leads that lost their contact and account
        for model in models:
            await uow.scores.rescore_all(model, now, ids)
        await _after_set_scoring(uow, ids, now)
        return len(ids)
    return await _score(uow, await uow.leads.lock_and_get(ids), models, now, reopened=reopened)


@dataclass(frozen=True, slots=True)
class _Changers:
    """Whose new interactions can change a model's scores: their contacts, and the accounts of
    those contacts (a lead with only an account sees all its contacts' interactions)."""

    contacts: frozenset[int]
    accounts: frozenset[int]

    def reach(self, lead: Lead) -> bool:
        if lead.contact_id is not None:
            return lead.contact_id in self.contacts
        return lead.account_id is not None and lead.account_id in self.accounts


def _changers(
    models: Sequence[ScoringModel], new: Sequence[Interaction], contacts: Mapping[int, Contact]
) -> dict[int, _Changers]:
    """For each model, whose new interactions can change its scores (see can_change)."""
    out: dict[int, _Changers] = {}
    for model in models:
        ids = frozenset(i.contact_id for i in new if can_change(model, i))
        accounts = frozenset(
            a for c in ids if c in contacts and (a := contacts[c].account_id) is not None
        )
        out[model.id] = _Changers(ids, accounts)
    return out


async def _score(
    uow: UnitOfWork,
    leads: Sequence[Lead],
    models: Sequence[ScoringModel],
    now: datetime,
    known: tuple[Mapping[int, Contact], Mapping[int, Account]] | None = None,
    new: Sequence[Interaction] | None = None,
    *,
    reopened: bool = False,
) -> int:
    """Score locked leads with the Python evaluator, reading and writing in bulk.

    A fixed number of statements whatever the number of leads: their contacts, accounts,
    interactions and stored scores are read after the leads were locked (so they include
    whatever a transaction that held the locks before committed), then the scores, events and
    sales-ready marks are written in one statement each.

    `new` (with `known` holding their contacts): the interactions just recorded, when they are
    all that changed for these leads. A model none of those a lead sees can change keeps that
    lead's stored score, if it still holds, without being evaluated or written again.

    Marks (sales-ready, and a qualification model's) go to leads that cross a threshold or
    newly meet criteria; `reopened` leads (reactivated) start over: what holds now marks them.
    """
    unscorable = [lead.id for lead in leads if not lead.scorable]
    if unscorable:  # they lost their contact and account: no score any more
        await uow.scores.drop_unscorable(unscorable)
    leads = [lead for lead in leads if lead.scorable]
    if not leads:
        return 0
    previous = await uow.scores.current([lead.id for lead in leads], [m.id for m in models])
    changers = _changers(models, new, known[0]) if new is not None and known else None
    # Per lead, the models to evaluate; the others keep their stored score, computed from
    # what is unchanged. The interactions read are only those these evaluations can count.
    plan: dict[int, set[int]] = {}  # lead id -> ids of the models to evaluate
    for lead in leads:
        plan[lead.id] = {
            model.id
            for model in models
            if changers is None
            or (stored := previous.get((lead.id, model.id))) is None
            or not stored.holds(model, now)
            or changers[model.id].reach(lead)
        }
    evaluated = {i for planned in plan.values() for i in planned}
    subjects = await subjects_for(
        uow,
        [lead for lead in leads if plan[lead.id]],
        known,
        scope_of([m for m in models if m.id in evaluated], now),
    )
    scores: list[tuple[int, ScoringModel, ScoreResult]] = []
    lead_scores: dict[int, dict[int, float]] = {}
    events: list[tuple[int, str, dict[str, Any]]] = []
    ready: list[Lead] = []
    for lead in leads:
        lead_scores[lead.id] = {}
        became_ready = points_changed = False
        for model in models:
            stored = previous.get((lead.id, model.id))
            before = stored.score if stored is not None else None
            if model.id not in plan[lead.id]:
                assert stored is not None
                score = stored.score
            else:
                result = evaluate(model, subjects[lead.id], now)
                scores.append((lead.id, model, result))
                score = result.score
            lead_scores[lead.id][model.id] = score
            if (before is None and score != 0) or (before is not None and before != score):
                changed = lead_snapshot(
                    lead, scoringModelId=model.id, score=score, previousScore=before
                )
                events.append((lead.id, "SCORE_CHANGED", changed))
                points_changed = True
            # Crossing the threshold marks a lead sales-ready: the model finds it ready now
            # and did not before (a mark taken off by hand is not put back for nothing).
            if (
                model.is_sales_ready(score)
                and not (stored is not None and stored.sales_ready and not reopened)
                and not lead.sales_ready
                and lead.state is LeadState.OPEN
            ):
                lead.sales_ready = True
                lead.updated_at = now
                ready.append(lead)
                became_ready = True
                marked = lead_snapshot(lead, scoringModelId=model.id, score=score)
                events.append((lead.id, "SALES_READY", marked))
        # The process follows what changed here: a lead in inquiry whose points changed and
        # who has points (from any LIVE model) starts automated marketing qualification, and a
        # lead that became sales-ready goes on to sales acceptance. A re-score that changes
        # neither leaves the stage alone, so a stage set by hand stays.
        scored = any(score != 0 for score in lead_scores[lead.id].values())
        first = sales.first_scored(lead) if scored and points_changed else None
        follow = sales.follow_checkboxes(lead, ("sales_ready",)) if became_ready else None
        for change in (first, follow):
            if change is not None:
                events.append((lead.id, change.type, change.payload))
                if lead not in ready:
                    ready.append(lead)
    await uow.scores.put_many(scores, now)
    await uow.events.add_many(events, now)
    if ready:
        await uow.leads.save_many(ready)
    # Every score change evaluates the LIVE qualification models in this transaction; they only
    # use LIVE scoring models, whose scores for each lead were all computed above. After the
    # score events, so each lead's events keep their order.
    qualifying = await uow.qualification_models.live()
    if qualifying:
        for lead in leads:
            # The scores these replaced: a model marks when its criteria newly hold. A lead
            # open again starts over: whatever holds now marks it.
            replaced = None
            if not reopened:
                replaced = {
                    m.id: stored.score
                    for m in models
                    if (stored := previous.get((lead.id, m.id))) is not None
                }
            await qualify_lead(uow, lead, lead_scores[lead.id], qualifying, now, replaced)
    await assign_by_rules(uow, leads, now)  # sales-ready now: to a seller, by the rules
    return len(leads)


async def score_new_leads(
    uow: UnitOfWork, lead_ids: Sequence[int], now: datetime | None = None
) -> None:
    """Score freshly created leads (e.g. an import chunk) set-based, with every LIVE model."""
    if not lead_ids or not await uow.settings.feature_enabled(Feature.LEAD_MANAGEMENT):
        return
    now = now or utcnow()
    for model in await uow.scoring_models.live():
        await uow.scores.rescore_all(model, now, lead_ids)
    await _after_set_scoring(uow, lead_ids, now)


async def rescore_expired(uow: UnitOfWork, now: datetime | None = None, limit: int = 500) -> int:
    """Re-score leads whose contributions left their time window; returns how many."""
    now = now or utcnow()
    pairs = await uow.scores.expired(now, limit)
    return await rescore_leads(uow, sorted({lead for lead, _ in pairs}), now)
