"""bad cases: failed and low-confidence jobs kept with image and result for labelling

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _timestamp() -> sa.types.TypeEngine:
    return (sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"))


def _blob() -> sa.types.TypeEngine:
    return (sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"))


def upgrade() -> None:
    op.create_table(
        "ocrq_badcases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("bid", sa.String(length=64), nullable=False),
        sa.Column("tid", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("image_name", sa.String(length=255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("image", _blob(), nullable=True),
        sa.Column("image_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    op.create_index("ix_ocrq_badcases_bid", "ocrq_badcases", ["bid"])
    op.create_index("ix_ocrq_badcases_created_at", "ocrq_badcases", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_ocrq_badcases_created_at", table_name="ocrq_badcases")
    op.drop_index("ix_ocrq_badcases_bid", table_name="ocrq_badcases")
    op.drop_table("ocrq_badcases")
