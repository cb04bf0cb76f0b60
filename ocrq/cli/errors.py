"""What the ``ocrq`` command prints when a service or the input is not right: one
line naming the cause (and the likely fix), never a traceback, and exit status 1."""

from __future__ import annotations

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from ocrq.errors import OcrqError

# Raised by commands and turned into one line by the ``ocrq`` group.
EXPECTED: tuple[type[BaseException], ...] = (OcrqError, SQLAlchemyError, RedisError)


def one_line(exc: BaseException) -> click.ClickException:
    if isinstance(exc, OcrqError):
        return click.ClickException(exc.message)
    if isinstance(exc, SQLAlchemyError):  # most often: a database never migrated
        first = str(exc.args[0]).splitlines()[0] if exc.args else type(exc).__name__
        return click.ClickException(f"database error ({type(exc).__name__}: {first}); "
                                    "is it migrated? run `ocrq db upgrade`")
    if isinstance(exc, RedisError):
        return click.ClickException(f"Redis: {exc} (is redis-server running? see "
                                    "OCRQ_REDIS_URL / OCRQ_BROKER_URL)")
    return click.ClickException(str(exc))


class OcrqGroup(click.Group):
    """A click group whose commands' service errors end as one line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EXPECTED as exc:
            raise one_line(exc) from exc
