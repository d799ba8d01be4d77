"""A small, realistic data set so a newcomer sees data at once (`leadflow serve --demo`)."""

from __future__ import annotations

import unicodedata

from domain import services
from domain.model import LeadSource
from domain.ports import UnitOfWorkFactory

_ACCOUNTS = [
    {
        "name": "Contoso Pharmaceuticals",
        "industry": "Pharma",
        "employeeCount": 12000,
        "country": "DE",
        "website": "contoso.example",
    },
    {
        "name": "Fabrikam Robotics",
        "industry": "Manufacturing",
        "employeeCount": 850,
        "country": "FR",
        "website": "fabrikam.example",
    },
    {
        "name": "Northwind Traders",
        "industry": "Retail",
        "employeeCount": 230,
        "country": "IT",
        "website": "northwind.example",
    },
    {
        "name": "Tailspin Toys",
        "industry": "Consumer goods",
        "employeeCount": 60,
        "country": "LT",
        "website": "tailspin.example",
    },
]

_PEOPLE = [
    ("Ada", "Rossi", "Head of IT", "Northwind Traders", "spring-webinar"),
    ("Jonas", "Petraitis", "CTO", "Tailspin Toys", "pricing-page"),
    ("Claire", "Dubois", "Procurement manager", "Fabrikam Robotics", "spring-webinar"),
    ("Marco", "Bianchi", "Marketing lead", "Northwind Traders", "ebook-lead-scoring"),
    ("Lena", "Schmidt", "VP Operations", "Contoso Pharmaceuticals", "pricing-page"),
    ("Hugo", "Martin", "Engineer", "Fabrikam Robotics", "ebook-lead-scoring"),
    ("Eglė", "Kazlauskienė", "CEO", "Tailspin Toys", "trade-fair-vilnius"),
    ("Sofia", "Conti", "Analyst", "Contoso Pharmaceuticals", "spring-webinar"),
]


async def load_demo(uow_factory: UnitOfWorkFactory) -> bool:
    """Load the demo set into an empty database; False when it already holds contacts."""
    async with uow_factory() as uow:
        if await uow.contacts.find_many("email", [_email(*_PEOPLE[0][:2])]):
            return False
        for values in _ACCOUNTS:
            await services.create_account(uow, values)
        for first, last, title, company, form in _PEOPLE:
            source = LeadSource.EVENT_REGISTRATION if "fair" in form else LeadSource.LANDING_PAGE
            await services.submit_form(
                uow,
                services.FormSubmission(
                    form_id=form,
                    source=source,
                    fields={
                        "email": _email(first, last),
                        "firstName": first,
                        "lastName": last,
                        "jobTitle": title,
                        "companyName": company,
                        "newsletter": "yes",
                    },
                    topic=f"{company}: {form.replace('-', ' ')}",
                ),
            )
        await services.create_lead(
            uow,
            {
                "topic": "Inbound call about fleet robots",
                "firstName": "Unknown",
                "companyName": "Litware",
                "source": LeadSource.MANUAL,
            },
        )
        await uow.commit()
    return True


def _email(first: str, last: str) -> str:
    def ascii_(name: str) -> str:
        return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()

    return f"{ascii_(first)}.{ascii_(last)}@example.com"
