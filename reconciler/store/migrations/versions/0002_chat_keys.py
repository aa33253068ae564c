"""API keys of the chat endpoint; sessions belong to a key and count their positions; messages keep
their finish reason.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("namespaces", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    # batch mode: SQLite cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("next_position", sa.Integer(), server_default="0", nullable=False))
        batch.create_foreign_key("fk_chat_sessions_api_key_id_api_keys", "api_keys", ["api_key_id"], ["id"],
                                 ondelete="SET NULL")
    with op.batch_alter_table("chat_messages") as batch:
        batch.add_column(sa.Column("finish_reason", sa.String(32), nullable=True))
    # Sessions of an earlier schema continue after their last message.
    op.execute("UPDATE chat_sessions SET next_position = (SELECT COALESCE(MAX(position) + 1, 0) FROM chat_messages "
               "WHERE chat_messages.session_id = chat_sessions.id)")


def downgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_column("finish_reason")
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_column("next_position")
        batch.drop_constraint("fk_chat_sessions_api_key_id_api_keys", type_="foreignkey")
        batch.drop_column("api_key_id")
    op.drop_table("api_keys")
