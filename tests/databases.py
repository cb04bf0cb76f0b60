"""The suite's MariaDB: the account it uses and throw-away databases on it.

Root without a password on 127.0.0.1 (as on CI) unless OCRQ_TEST_MYSQL_URL names
another (scripts/test creates one where root uses socket authentication, as on a
fresh Debian install). Every database the suite creates is named ocrq_test_*
and dropped when the test is done.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
from sqlalchemy.engine import make_url

from ocrq.cli.serve import upgrade

MARIADB_URL = os.environ.get(
    "OCRQ_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306").rstrip("/")
_mysql = make_url(MARIADB_URL)
MARIADB = {"host": _mysql.host or "127.0.0.1", "port": _mysql.port or 3306,
           "user": _mysql.username or "root", "password": _mysql.password or ""}


@contextmanager
def throwaway_mariadb(migrate: bool = True) -> Iterator[str]:
    """The URL of a new, empty (or with ``migrate``: migrated) database, dropped after."""
    name = f"ocrq_test_{secrets.token_hex(4)}"
    conn = pymysql.connect(**MARIADB)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        if migrate:
            upgrade(f"{MARIADB_URL}/{name}")
        yield f"{MARIADB_URL}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
