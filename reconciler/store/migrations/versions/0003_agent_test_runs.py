"""Smoke-test results per agent: the cases run after a sync that changed it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_test_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("revision", sa.String(64), nullable=True),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("failures", JSON, nullable=False),
        sa.Column("finished_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_test_runs"),
    )
    op.create_index("ix_agent_test_runs_agent", "agent_test_runs", ["source", "namespace", "name", "id"])


def downgrade() -> None:
    op.drop_index("ix_agent_test_runs_agent", table_name="agent_test_runs")
    op.drop_table("agent_test_runs")
