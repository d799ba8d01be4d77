"""The leadflow command: apikey, import, migrate, schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api import cli
from api.settings import get_settings
from domain.ports import LeadFilter
from persistence.database import Database


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url  # type: ignore[misc]
    get_settings.cache_clear()


def _count(url: str, what: str) -> int:
    async def run() -> int:
        db = Database(url)
        try:
            async with db.read() as r:
                if what == "contacts":
                    return await r.contacts.count(None, None)
                if what == "accounts":
                    return await r.accounts.count(None)
                return await r.leads.count(LeadFilter())
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_apikey_create_list_revoke(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apikey", "create", "--name", "ci bot", "--role", "INTEGRATION"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("lf_")
    assert cli.main(["apikey", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci bot" in listing and "INTEGRATION" in listing and secret not in listing
    assert cli.main(["apikey", "revoke", "1"]) == 0
    assert cli.main(["apikey", "revoke", "1"]) == 1


def test_import_contacts_with_mapping(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("mail,given,Company\na@x.io,Ann,Contoso\nb@x.io,Bob,contoso\nbad,Bad,X\n")
    code = cli.main(
        ["import", "contacts", str(path), "--map", "mail=email", "--map", "given=firstName"]
    )
    assert code == 1  # one row failed
    assert _count(cli_db, "contacts") == 2
    assert _count(cli_db, "accounts") == 1


def test_import_rejects_a_bad_mapping(cli_db: str, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("topic,email\nT,a@x.io\n")
    assert cli.main(["import", "leads", str(path), "--map", "email=nonsense"]) == 2
    assert _count(cli_db, "leads") == 0


def test_migrate_and_schema(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate"]) == 0
    assert cli.main(["schema"]) == 0
    assert "type Lead implements Node" in capsys.readouterr().out
