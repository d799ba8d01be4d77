"""What the rule language looks at for a lead: its contact, account and interactions, in bulk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domain.model import Account, Contact, Lead
from domain.ports import Repositories
from domain.scoring import InteractionScope, Subject


async def subjects_for(
    uow: Repositories,
    leads: Sequence[Lead],
    known: tuple[Mapping[int, Contact], Mapping[int, Account]] | None = None,
    scope: InteractionScope | None = None,
) -> dict[int, Subject]:
    """Each lead's Subject, read in a fixed number of statements whatever the number of leads.

    A lead with a contact counts that contact's interactions; one with only an account, the
    interactions of all the account's contacts. `known` holds contacts and accounts the caller
    has just read (with the leads locked), so they are not read again. With a `scope` (see
    scope_of), only the interactions it names are read: enough for the evaluations it was
    made for, not for anything else.
    """
    contact_ids = sorted({lead.contact_id for lead in leads if lead.contact_id is not None})
    contacts: dict[int, Contact] = dict(known[0]) if known else {}
    accounts: dict[int, Account] = dict(known[1]) if known else {}
    # Read after the leads were locked, with their accounts, unless the caller just did.
    missing = [i for i in contact_ids if i not in contacts]
    if missing:
        more_contacts, more_accounts = await uow.contacts.get_many_with_accounts(missing)
        contacts.update(more_contacts)
        accounts.update(more_accounts)

    def account_of(lead: Lead) -> int | None:
        contact = contacts.get(lead.contact_id) if lead.contact_id is not None else None
        return lead.account_id or (contact.account_id if contact else None)

    account_ids = {a for lead in leads if (a := account_of(lead)) is not None}
    if account_ids - accounts.keys():  # leads with an account of their own
        accounts.update(await uow.accounts.get_many(sorted(account_ids - accounts.keys())))
    # A lead with a contact counts that contact's interactions; one with only an account, the
    # interactions of all the account's contacts.
    pooled = sorted(
        {lead.account_id for lead in leads if lead.contact_id is None and lead.account_id}
    )
    by_contact, by_account = await uow.interactions.for_subjects(contact_ids, pooled, scope)
    out: dict[int, Subject] = {}
    for lead in leads:
        contact = contacts.get(lead.contact_id) if lead.contact_id is not None else None
        account_id = account_of(lead)
        account = accounts.get(account_id) if account_id is not None else None
        if lead.contact_id is not None:
            interactions = by_contact.get(lead.contact_id, [])
        else:
            interactions = by_account.get(lead.account_id or 0, [])
        out[lead.id] = Subject(lead, contact, account, interactions)
    return out
