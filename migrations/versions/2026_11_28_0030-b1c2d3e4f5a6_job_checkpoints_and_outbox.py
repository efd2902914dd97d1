"""job checkpoints, lost-attempt and enqueue counters, artifact metadata

Revision ID: b1c2d3e4f5a6
Revises: 707db0eedf34
Create Date: 2026-11-28 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b1c2d3e4f5a6"
down_revision = "707db0eedf34"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lost_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("enqueue_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("checkpoint_epoch", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("checkpoint_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("meta")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("checkpoint_sha256")
        batch_op.drop_column("checkpoint_key")
        batch_op.drop_column("checkpoint_epoch")
        batch_op.drop_column("enqueue_count")
        batch_op.drop_column("lost_count")
