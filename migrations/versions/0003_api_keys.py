"""api keys: one business (bid) per key; only the token's sha256 is stored

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp() -> sa.types.TypeEngine:
    return (sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"))


def upgrade() -> None:
    op.create_table(
        "ocrq_api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("bid", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ocrq_api_keys_bid", "ocrq_api_keys", ["bid"])


def downgrade() -> None:
    op.drop_index("ix_ocrq_api_keys_bid", table_name="ocrq_api_keys")
    op.drop_table("ocrq_api_keys")
