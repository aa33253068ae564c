"""Each agent's readiness and drift as the watcher last saw them; each sync run's plan and the agents it
changed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("drift", JSON, nullable=True),
        sa.Column("observed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_status"),
        sa.UniqueConstraint("namespace", "name", name="uq_agent_status_namespace_name"),
    )
    op.create_index("ix_agent_status_source", "agent_status", ["source"])
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("plan", JSON, nullable=True))
    op.create_table(
        "sync_run_agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sync_run_agents"),
        sa.ForeignKeyConstraint(["run_id"], ["sync_runs.id"], name="fk_sync_run_agents_run_id_sync_runs",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_sync_run_agents_namespace_name", "sync_run_agents", ["namespace", "name"])


def downgrade() -> None:
    op.drop_index("ix_sync_run_agents_namespace_name", "sync_run_agents")
    op.drop_table("sync_run_agents")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("plan")
    op.drop_index("ix_agent_status_source", "agent_status")
    op.drop_table("agent_status")
