"""overview speed: the all-time first-response median and P90 read at their ranks from an index

`ix_case_response_minutes` holds each answered, unmerged case's first-response minutes (the expression of
`casestore.stats._response_minutes_sql`, parameter-free, so the database matches it) in order, with the columns the
overview filters on (created_at, grid_id) and those the expression reads, so PostgreSQL can answer from the index
alone (index-only scan) and SQLite without the table. The overview then reads the rows at the median's and P90's
ranks by ORDER BY .. OFFSET instead of ordering ~94k cases per request. The expression must stay identical to
`_response_minutes_sql`; if one changes, a new migration recreates the index.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:50:00
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_POSTGRESQL = ('CASE WHEN (CAST(EXTRACT(epoch FROM first_response_at - coalesce(clock_started_at, created_at)) '
               '/ CAST(60.0 AS FLOAT) AS FLOAT) < 0.0) THEN 0.0 ELSE CAST(EXTRACT(epoch FROM first_response_at - '
               'coalesce(clock_started_at, created_at)) / CAST(60.0 AS FLOAT) AS FLOAT) END')
_SQLITE = ('CASE WHEN ((julianday(first_response_at) - julianday(coalesce(clock_started_at, created_at))) * 1440.0 '
           '< 0.0) THEN 0.0 ELSE (julianday(first_response_at) - julianday(coalesce(clock_started_at, created_at))) '
           '* 1440.0 END')


def upgrade() -> None:
    minutes = _POSTGRESQL if op.get_bind().dialect.name == 'postgresql' else _SQLITE
    op.execute(f'CREATE INDEX ix_case_response_minutes ON "case" (({minutes}), created_at, grid_id, '
               f'first_response_at, clock_started_at, duplicate_of_id) WHERE first_response_at IS NOT NULL')


def downgrade() -> None:
    op.drop_index('ix_case_response_minutes', table_name='case')
