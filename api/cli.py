"""The `leadflow` command: serve, migrate, apikey, import, schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.ids import decode_id
from api.settings import Settings, get_settings
from domain.errors import DomainError
from domain.importing import ImportEntity, ImportResult, chunks, import_chunk, read_csv
from domain.roles import Role
from persistence.apikeys import ApiKeyStore
from persistence.database import Database
from persistence.migrate import upgrade

console = Console(stderr=True)


class _Usage(Exception):
    """A command used wrongly: its message is printed and the command exits 2."""


def _settings_problem(e: ValidationError) -> str:
    lines = ["invalid settings:"]
    for error in e.errors():
        name = "LEADFLOW_" + "_".join(str(part) for part in error["loc"][:1]).upper()
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)


def _database_problem(e: BaseException) -> str | None:
    """One line for a database that cannot be reached or opened; None for other errors."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    if isinstance(e, DBAPIError):
        reason = str(e.orig or e).strip().splitlines()[0]
    elif isinstance(e, ConnectionError | TimeoutError | socket.gaierror | ArgumentError):
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    else:
        return None
    try:
        url = get_settings().database_url
    except (ValidationError, SettingsError):
        url = "LEADFLOW_DATABASE_URL"
    shown = url.split("@")[-1] if "@" in url else url  # no user or password
    return f"cannot open the database ({shown}): {reason}"


def _db() -> Database:
    s = get_settings()
    return Database(s.database_url, busy_timeout_ms=s.sqlite_busy_timeout_ms)


async def _migrate(db: Database) -> None:
    await upgrade(db.write_engine)


# ---------------------------------------------------------------- serve


async def _prepare(demo: bool, host: str, port: int) -> None:
    """Migrate, print a bootstrap ADMIN key on a fresh install, load demo data if asked."""
    db = _db()
    try:
        await _migrate(db)
        keys = ApiKeyStore(db)
        if not await keys.count_active() and not (await keys.list()):
            _, secret = await keys.create("bootstrap admin", Role.ADMIN)
            # Plain print: the key and the curl line must not be wrapped or styled.
            print(
                "\nA new database: here is its first ADMIN API key. "
                "It is shown once; keep it safe.\n"
                f"\n    {secret}\n\n"
                "Use it as a bearer token, e.g.\n"
                f"    curl -s http://{host}:{port}/graphql "
                f"-H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' "
                """-d '{"query": "{ viewer { name role } }"}'\n"""
                "Keys for other roles: "
                "leadflow apikey create --name NAME --role ROLE [--user USER_ID]\n",
                file=sys.stderr,
                flush=True,
            )
        if demo:
            from api.demo import load_demo

            loaded = await load_demo(db.uow)
            console.print("Demo data loaded." if loaded else "Demo data already present.")
    finally:
        await db.dispose()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options that carry the request limits to the server itself."""
    # A WebSocket message larger than the HTTP body cap is refused by uvicorn (close 1009).
    return {
        "ws_max_size": settings.max_body_bytes,
        "proxy_headers": True,
        "timeout_keep_alive": settings.keep_alive_seconds,
    }


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    asyncio.run(_prepare(args.demo, host, port))
    console.print(f"LeadFlow on http://{host}:{port}/graphql ({settings.env})")
    uvicorn.run(
        "api.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        log_level=settings.log_level,
        **server_options(settings),
    )
    return 0


# ---------------------------------------------------------------- apikey


def _user_id(raw: str) -> int:
    """A user's id as `apikey create --user` takes it: the number or the GraphQL ID."""
    raw = raw.strip()
    if raw.isdigit() and 0 < int(raw) < 2**63:
        return int(raw)
    return decode_id(raw, "User", ["user"])


def apikey(args: argparse.Namespace) -> int:
    async def run() -> int:
        db = _db()
        try:
            await _migrate(db)
            store = ApiKeyStore(db)
            if args.action == "create":
                try:
                    user_id = None if args.user is None else _user_id(args.user)
                    key, secret = await store.create(args.name, Role(args.role), user_id=user_id)
                except (DomainError, ValueError) as e:
                    console.print(f"[red]{getattr(e, 'message', e)}[/]")
                    return 2
                owner = "" if key.user_id is None else f" for user {key.user_id}"
                console.print(
                    f"Created key {key.id} '{key.name}' ({key.role.value}){owner}. "
                    "It is shown once:"
                )
                print(secret)
            elif args.action == "list":
                table = Table("id", "name", "role", "user", "prefix", "created", "revoked")
                for k in await store.list():
                    table.add_row(
                        str(k.id),
                        k.name,
                        k.role.value,
                        "" if k.user_id is None else str(k.user_id),
                        k.prefix + "…",
                        k.created_at.isoformat(timespec="seconds"),
                        k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
                    )
                Console().print(table)
            elif not await store.revoke(args.id):
                console.print(f"[red]No active key with id {args.id}.[/]")
                return 1
            else:
                console.print(f"Key {args.id} revoked.")
            return 0
        finally:
            await db.dispose()

    return asyncio.run(run())


# ---------------------------------------------------------------- import


def _mapping(pairs: Sequence[str]) -> dict[str, str | None] | None:
    if not pairs:
        return None
    out: dict[str, str | None] = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep:
            raise _Usage(f"--map takes COLUMN=FIELD, got {pair!r}")
        out[column] = field or None
    return out


def import_file(args: argparse.Namespace) -> int:
    entity = {
        "contacts": ImportEntity.CONTACT,
        "leads": ImportEntity.LEAD,
        "accounts": ImportEntity.ACCOUNT,
    }[args.entity]
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        console.print(f"[red]cannot read {path}: {e.strerror or e}[/]")
        return 2
    except UnicodeDecodeError as e:
        console.print(f"[red]{path} is not UTF-8 text (byte {e.start}): save it as UTF-8 CSV[/]")
        return 2
    total_rows = max(text.count("\n") - (0 if text.endswith("\n") else -1) - 1, 0)

    async def run() -> int:
        db = _db()
        total = ImportResult()
        try:
            await _migrate(db)
            try:
                _, rows = read_csv(text, entity, _mapping(args.map))
            except DomainError as e:
                console.print(f"[red]{e.message}[/]")
                return 2
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(
                *columns,
                console=console,
                disable=not sys.stderr.isatty() and bool(os.environ.get("CI")),
            ) as progress:
                task = progress.add_task(f"Importing {args.entity}", total=total_rows)
                for chunk in chunks(rows):
                    # One transaction per chunk: progress is durable and the writer lock is short.
                    async with db.uow() as uow:
                        result = await import_chunk(uow, entity, chunk)
                        await uow.commit()
                    total.add(result)
                    progress.advance(task, len(chunk))
        finally:
            await db.dispose()
        t = total
        console.print(
            f"created {t.created}, updated {t.updated}, skipped {t.skipped}, failed {t.failed}"
        )
        for row, message in total.errors[:50]:
            console.print(f"  row {row}: {message}")
        if len(total.errors) > 50:
            console.print(f"  … and {len(total.errors) - 50} more")
        return 1 if total.failed else 0

    return asyncio.run(run())


# ---------------------------------------------------------------- migrate, schema


def migrate(_: argparse.Namespace) -> int:
    async def run() -> None:
        db = _db()
        try:
            await _migrate(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    console.print("Database is up to date.")
    return 0


def schema(args: argparse.Namespace) -> int:
    from api.graphql import build_schema

    sdl = build_schema().as_str() + "\n"
    if args.output:
        try:
            Path(args.output).write_text(sdl)
        except OSError as e:
            raise _Usage(f"cannot write {args.output}: {e.strerror or e}") from None
    else:
        sys.stdout.write(sdl)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leadflow", description="LeadFlow lead management service"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the GraphQL server (migrates the database first)")
    p.add_argument("--host")
    p.add_argument("--port", type=_port)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--demo", action="store_true", help="load a small demo data set")
    p.set_defaults(func=serve)

    p = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    p.set_defaults(func=migrate)

    p = sub.add_parser("apikey", help="create, list or revoke API keys")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create")
    k.add_argument("--name", required=True)
    k.add_argument("--role", required=True, choices=[r.value for r in Role])
    k.add_argument(
        "--user",
        metavar="USER_ID",
        help="the user the key belongs to (id or GraphQL ID): 'my leads', the default work list",
    )
    keys.add_parser("list")
    k = keys.add_parser("revoke")
    k.add_argument("id", type=int)
    p.set_defaults(func=apikey)

    p = sub.add_parser("import", help="import a CSV file of contacts, leads or accounts")
    p.add_argument("entity", choices=["contacts", "leads", "accounts"])
    p.add_argument("file")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="map a CSV column to a field (FIELD empty: skip the column)",
    )
    p.set_defaults(func=import_file)

    p = sub.add_parser("schema", help="print the GraphQL schema (SDL)")
    p.add_argument("--output", "-o")
    p.set_defaults(func=schema)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except _Usage as e:
        console.print(f"[red]{e}[/]", highlight=False)
    except ValidationError as e:  # the settings, read by every command
        console.print(f"[red]{_settings_problem(e)}[/]", highlight=False)
    except SettingsError as e:  # a setting that is not even JSON
        console.print(f"[red]invalid settings: {e}: {e.__cause__}[/]", highlight=False)
    except Exception as e:
        problem = _database_problem(e)
        if problem is None:
            raise
        console.print(f"[red]{problem}[/]", highlight=False)
    return 2


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port from 1 to 65535, not {raw!r}")
    return port


if __name__ == "__main__":
    raise SystemExit(main())
