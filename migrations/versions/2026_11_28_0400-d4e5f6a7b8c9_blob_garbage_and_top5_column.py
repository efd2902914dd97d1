"""blob garbage queue and the val_top5_accuracy metric column

Revision ID: d4e5f6a7b8c9
Revises: c3d4e5f6a7b8
Create Date: 2026-11-28 04:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = 'd4e5f6a7b8c9'
down_revision = 'c3d4e5f6a7b8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blob_garbage',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blob_garbage'))
    )
    with op.batch_alter_table('job_metrics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('val_top5_accuracy', sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_metrics', schema=None) as batch_op:
        batch_op.drop_column('val_top5_accuracy')
    op.drop_table('blob_garbage')
