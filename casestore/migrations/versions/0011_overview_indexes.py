"""overview speed: cases by creation time, case and audit events by action and time

`ix_case_created` lets the console's today / this-week figures read only those days' cases; the ratings and
escalations (caseevent) and the recorded questions (auditevent) are counted per window by action and time.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:40:00
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_case_created', 'case', ['created_at'], unique=False)
    op.create_index('ix_caseevent_action_at', 'caseevent', ['action', 'at'], unique=False)
    op.create_index('ix_auditevent_action_at', 'auditevent', ['action', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_auditevent_action_at', table_name='auditevent')
    op.drop_index('ix_caseevent_action_at', table_name='caseevent')
    op.drop_index('ix_case_created', table_name='case')
