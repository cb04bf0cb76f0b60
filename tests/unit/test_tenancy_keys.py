"""API keys: what is stored (a hash, never the token), and `ocrq keys create|list|revoke`
as an operator runs it, against a migrated SQLite file and a MariaDB database."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ocrq.cli import main
from ocrq.storage import Database
from ocrq.storage import keys as store
from tests.databases import throwaway_mariadb

PLANS = "default_bid: default\ntids:\n  ocr: {steps: [detect, recognize, reorder]}\n" \
        "bids:\n  default: {}\n  acme: {}\n  globex: {}\n"
TOKEN = re.compile(r"^ocrq_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    path = tmp_path / "keys.sqlite3"
    shutil.copy(migrated_sqlite, path)
    return f"sqlite:///{path}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A throw-away MariaDB database, migrated, dropped afterwards."""
    with throwaway_mariadb() as url:
        yield url


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_a_key_is_stored_as_a_hash_and_authenticates_until_revoked(
        backend: str, request: pytest.FixtureRequest) -> None:
    db = Database(request.getfixturevalue(f"{backend}_url"))
    key, token = store.create_key(db, "acme", "till 3")
    m = TOKEN.match(token)
    assert m and m.group(1) == key.id
    row = store.get_key(db, key.id)
    assert row is not None and (row.bid, row.label, row.revoked_at) == ("acme", "till 3", None)
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.split("_", 2)[2] not in repr(vars(row))  # the secret is not kept
    assert store.authenticate(db, token).id == key.id  # type: ignore[union-attr]
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"),  # right id, wrong secret
                  token.replace(key.id, "0" * 16), "ocrq_" + key.id, "", "Bearer " + token):
        assert store.authenticate(db, wrong) is None, wrong
    other, other_token = store.create_key(db, "globex")
    assert store.revoke_key(db, key.id).revoked_at is not None  # type: ignore[union-attr]
    assert store.authenticate(db, token) is None
    assert store.authenticate(db, other_token).bid == "globex"  # type: ignore[union-attr]
    assert [k.id for k in store.list_keys(db, "acme")] == [key.id]
    assert {k.id for k in store.list_keys(db)} == {key.id, other.id}
    assert store.revoke_key(db, "f" * 16) is None
    db.dispose()


def ocrq_keys(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["keys", *args], env=env, catch_exceptions=False)


@pytest.fixture
def cli_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    return {"OCRQ_DATABASE_URL": sqlite_url, "OCRQ_PLANS_FILE": str(plans)}


def _table(output: str) -> list[dict[str, str]]:
    lines = [ln for ln in output.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")), strict=True))
            for ln in lines[2:]]


def test_cli_create_list_revoke(cli_env: dict[str, str]) -> None:
    made = ocrq_keys(cli_env, "create", "acme", "--label", "A's till")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert TOKEN.match(token), made.stdout  # stdout is the token alone: scripts can capture it
    key_id = TOKEN.match(token).group(1)  # type: ignore[union-attr]
    assert "shown only now" in made.stderr
    assert ocrq_keys(cli_env, "create", "globex").exit_code == 0

    listed = ocrq_keys(cli_env, "list")
    assert listed.exit_code == 0 and token.split("_", 2)[2] not in listed.output
    rows = {r["key_id"]: r for r in _table(listed.stdout)}
    assert len(rows) == 2 and rows[key_id]["bid"] == "acme"
    assert rows[key_id]["label"] == "A's till" and rows[key_id]["revoked_at"] == ""
    only_a = _table(ocrq_keys(cli_env, "list", "acme").stdout)
    assert [r["key_id"] for r in only_a] == [key_id]

    db = Database(cli_env["OCRQ_DATABASE_URL"])
    assert store.authenticate(db, token).bid == "acme"  # type: ignore[union-attr]
    revoked = ocrq_keys(cli_env, "revoke", key_id)
    assert revoked.exit_code == 0 and f"key {key_id} of bid acme revoked" in revoked.stdout
    assert store.authenticate(db, token) is None
    assert _table(ocrq_keys(cli_env, "list", "acme").stdout)[0]["revoked_at"] != ""
    path = cli_env["OCRQ_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # nowhere in the database, in any column
        dump = "\n".join(conn.iterdump())
    assert token.split("_", 2)[2] not in dump and key_id in dump


def test_cli_refuses_an_unknown_bid_or_key(cli_env: dict[str, str]) -> None:
    unknown = ocrq_keys(cli_env, "create", "initech")
    assert unknown.exit_code == 1 and "not in the plans" in unknown.output
    assert _table(ocrq_keys(cli_env, "list").stdout) == []
    forced = ocrq_keys(cli_env, "create", "initech", "--any-bid")
    assert forced.exit_code == 0 and TOKEN.match(forced.stdout.strip())
    missing = ocrq_keys(cli_env, "revoke", "0123456789abcdef")
    assert missing.exit_code == 1 and "no key '0123456789abcdef'" in missing.output


def test_cli_on_a_database_never_migrated(tmp_path: Path) -> None:
    env = {"OCRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    result = ocrq_keys(env, "list")
    assert result.exit_code == 1 and "ocrq db upgrade" in result.output
