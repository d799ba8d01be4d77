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


def _new_user(url: str, name: str) -> int:
    from domain.sales import User

    async def run() -> int:
        db = Database(url)
        try:
            async with db.uow() as uow:
                user = await uow.users.add(User(name, f"{name}@cli.io"))
                await uow.commit()
            return user.id
        finally:
            await db.dispose()

    return asyncio.run(run())


def _keys(url: str) -> list[tuple[str, int | None]]:
    from persistence.apikeys import ApiKeyStore

    async def run() -> list[tuple[str, int | None]]:
        db = Database(url)
        try:
            return [(k.name, k.user_id) for k in await ApiKeyStore(db).list()]
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_apikey_create_for_a_user(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from api.ids import to_global_id

    ann = _new_user(cli_db, "ann")
    create = ["apikey", "create", "--role", "SELLER", "--name"]
    assert cli.main([*create, "ann's", "--user", str(ann)]) == 0
    assert capsys.readouterr().out.strip().startswith("lf_")
    # The user's GraphQL ID works as well.
    assert cli.main([*create, "ann's too", "--user", to_global_id("User", ann)]) == 0
    assert cli.main([*create, "nobody's"]) == 0
    capsys.readouterr()

    # An unknown user, or something that is not a user's id: an error, and no key.
    assert cli.main([*create, "ghost's", "--user", str(ann + 1000)]) == 2
    assert f"no user with id {ann + 1000}" in capsys.readouterr().err
    assert cli.main([*create, "lead's", "--user", to_global_id("Lead", 1)]) == 2
    assert "expected an ID of a User" in capsys.readouterr().err
    assert cli.main([*create, "junk", "--user", "-3"]) == 2
    assert _keys(cli_db) == [("ann's", ann), ("ann's too", ann), ("nobody's", None)]

    assert cli.main(["apikey", "list"]) == 0
    listing = capsys.readouterr().out
    assert "user" in listing
    rows = {line.split("│")[2].strip(): line for line in listing.splitlines() if "│" in line}
    assert rows["ann's"].split("│")[4].strip() == str(ann)
    assert rows["nobody's"].split("│")[4].strip() == ""


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


def test_import_of_a_missing_or_non_utf8_file_is_a_clear_error(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import", "contacts", str(tmp_path / "nowhere.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfeabc")
    assert cli.main(["import", "contacts", str(binary)]) == 2
    assert "not UTF-8" in " ".join(capsys.readouterr().err.split())


def test_migrate_and_schema(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate"]) == 0
    assert cli.main(["schema"]) == 0
    assert "type Lead implements Node" in capsys.readouterr().out


def test_usage_errors_exit_2_with_one_clear_message(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("topic,email\nT,a@x.io\n")
    assert cli.main(["import", "leads", str(path), "--map", "Tier"]) == 2
    assert "--map takes COLUMN=FIELD" in capsys.readouterr().err
    assert cli.main(["schema", "-o", str(tmp_path / "no" / "such" / "dir.graphql")]) == 2
    assert "cannot write" in capsys.readouterr().err
    for port in ("70000", "0", "http"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["serve", "--port", port])
        assert exited.value.code == 2
        assert "a port from 1 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("LEADFLOW_PORT", "abc", "LEADFLOW_PORT: Input should be a valid integer"),
        ("LEADFLOW_LOG_LEVEL", "loud", "LEADFLOW_LOG_LEVEL: Input should be 'critical'"),
        ("LEADFLOW_DATABASE_URL", "mysql://u@h/db", "LeadFlow stores its data in SQLite"),
        ("LEADFLOW_REDIS_URL", "http://127.0.0.1:6379", "LEADFLOW_REDIS_URL: Value error"),
        ("LEADFLOW_RATE_LIMITS", "notjson", "invalid settings: error parsing value"),
        (
            "LEADFLOW_DATABASE_URL",
            "postgresql+asyncpg://leadflow@127.0.0.1:1/nowhere",
            "cannot open the database (127.0.0.1:1/nowhere)",
        ),
    ],
)
def test_bad_settings_and_unreachable_databases_are_one_message(
    cli_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    shown: str,
) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert cli.main(["migrate"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert shown in err and "Traceback" not in err


def test_plain_database_schemes_mean_the_async_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql://u@h:5432/db")
    monkeypatch.setenv("LEADFLOW_REDIS_URL", "")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.database_url == "postgresql+asyncpg://u@h:5432/db"
        assert settings.redis_url is None
    finally:
        get_settings.cache_clear()
