"""overview speed: the all-time case sums kept per grid by triggers (`case_totals`), backfilled from the cases

The overview's all-time figures summed ~14 conditions over every case per request (at 100k cases ~110-130 ms CPU
on SQLite, ~150-250 ms on PostgreSQL). The parts of them that do not depend on the clock are additive, so they are
kept here per grid (and, on PostgreSQL, per shard: the case id modulo 16, so that concurrent transactions seldom
wait on one grid's row, and a bulk load does not update one row version thousands of times in one transaction) and
the overview sums these few hundred rows instead. The parts that
depend on `now` (late while open, overdue) are counted over the open cases (`ix_case_open_due`).

Triggers, not Python: every writer of the case table keeps the totals right in its own transaction, whatever it
is (`apply_action`, `apply_actions_bulk`, an ORM flush, the benchmarks' and demo's bulk inserts, raw SQL).
Each row's parts are `_parts(row)` below; they must stay the clock-free halves of `casestore.stats._case_rules`
(tests/test_case_totals.py checks that after random case histories). If one changes, a new migration recreates
the triggers and backfills. A SQLite batch migration that recreates "case" drops its triggers: recreate them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 09:00:00
"""
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_OPEN = "('accepted', 'assigned', 'in_progress', 'new', 'reopened')"
# the columns a part reads; an UPDATE that changes none of them leaves the totals alone
_COLUMNS = ('grid_id', 'duplicate_of_id', 'status', 'response_due_at', 'resolve_due_at', 'first_response_at',
            'resolved_at', 'reopen_count', 'close_reason')
_SHARDS = 16


def _conditions(r: str) -> dict[str, str]:
    real = f'{r}.duplicate_of_id IS NULL'
    return {
        'cases': real,
        'duplicates': f'{r}.duplicate_of_id IS NOT NULL',
        'resp_done': f'{real} AND {r}.response_due_at IS NOT NULL AND {r}.first_response_at IS NOT NULL',
        'resp_ok': (f'{real} AND {r}.response_due_at IS NOT NULL AND {r}.first_response_at IS NOT NULL '
                    f'AND {r}.first_response_at <= {r}.response_due_at'),
        'res_done': f'{real} AND {r}.resolve_due_at IS NOT NULL AND {r}.resolved_at IS NOT NULL',
        'res_ok': (f'{real} AND {r}.resolve_due_at IS NOT NULL AND {r}.resolved_at IS NOT NULL '
                   f'AND {r}.resolved_at <= {r}.resolve_due_at'),
        'open': f'{real} AND {r}.status IN {_OPEN}',
        'resolved': f'{real} AND {r}.resolved_at IS NOT NULL',
        'resolved_ever': (f"{real} AND ({r}.resolved_at IS NOT NULL OR {r}.reopen_count > 0 "
                          f"OR {r}.status = 'closed')"),
        'reopened': f'{real} AND {r}.reopen_count > 0',
        'answered': f"{real} AND {r}.close_reason = 'rated'",
        'auto_closed': f"{real} AND {r}.close_reason = 'auto_closed_without_rating'",
        'responded': f'{real} AND {r}.first_response_at IS NOT NULL',
    }


_NAMES = tuple(_conditions('x'))


def _parts(r: str, sign: str = '') -> list[str]:
    return [f'{sign}(CASE WHEN ({c}) THEN 1 ELSE 0 END)' for c in _conditions(r).values()]


def _upsert(r: str, sign: str, shard: str) -> str:
    """Add row `r`'s parts (times `sign`) to its grid's totals (in its shard: `shard` of `r`)."""
    shard = shard.format(r=r)
    names = ', '.join(_NAMES)
    add = ', '.join(f'{n} = case_totals.{n} + excluded.{n}' for n in _NAMES)
    return (f"INSERT INTO case_totals (grid_key, shard, {names}) VALUES (coalesce({r}.grid_id, ''), {shard}, "
            f"{', '.join(_parts(r, sign))}) ON CONFLICT (grid_key, shard) DO UPDATE SET {add}")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    counts = ', '.join(f'{n} BIGINT NOT NULL DEFAULT 0' for n in _NAMES)
    op.execute(f'CREATE TABLE case_totals (grid_key VARCHAR NOT NULL, shard INTEGER NOT NULL, {counts}, '
               'PRIMARY KEY (grid_key, shard))')
    # the clock-dependent parts: the open, unmerged cases, read from this index alone. Its WHERE is one expression
    # (`casestore.stats._OPEN_REAL`, constants written out): a database uses a partial index only for a query whose
    # WHERE holds the same, and as plain terms SQLite would walk ix_case_status or ix_case_duplicate_of_id instead
    op.execute('CREATE INDEX ix_case_open_due ON "case" (resolve_due_at, response_due_at, first_response_at, '
               f'resolved_at, grid_id, created_at) WHERE CASE WHEN (status IN {_OPEN} AND duplicate_of_id IS NULL) '
               'THEN 1 ELSE 0 END = 1')
    changed = ' OR '.join(f'OLD.{c} IS DISTINCT FROM NEW.{c}' if postgresql else f'OLD.{c} IS NOT NEW.{c}'
                          for c in _COLUMNS)
    if postgresql:
        shard = '{r}.id % ' + str(_SHARDS)
        op.execute(f"""CREATE FUNCTION case_totals_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {_upsert('OLD', '-', shard)};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_upsert('NEW', '', shard)};
    END IF;
    RETURN NULL;
END $$""")
        op.execute('CREATE TRIGGER case_totals_insert AFTER INSERT ON "case" FOR EACH ROW '
                   'EXECUTE FUNCTION case_totals_apply()')
        op.execute(f'CREATE TRIGGER case_totals_update AFTER UPDATE OF {", ".join(_COLUMNS)} ON "case" FOR EACH ROW '
                   f'WHEN ({changed}) EXECUTE FUNCTION case_totals_apply()')
        op.execute('CREATE TRIGGER case_totals_delete AFTER DELETE ON "case" FOR EACH ROW '
                   'EXECUTE FUNCTION case_totals_apply()')
    else:
        op.execute(f'CREATE TRIGGER case_totals_insert AFTER INSERT ON "case" BEGIN {_upsert("NEW", "", "0")}; END')
        op.execute(f'CREATE TRIGGER case_totals_update AFTER UPDATE OF {", ".join(_COLUMNS)} ON "case" '
                   f'WHEN {changed} BEGIN {_upsert("OLD", "-", "0")}; {_upsert("NEW", "", "0")}; END')
        op.execute(f'CREATE TRIGGER case_totals_delete AFTER DELETE ON "case" BEGIN {_upsert("OLD", "-", "0")}; END')
    sums = ', '.join(f'sum({p})' for p in _parts('"case"'))
    op.execute(f"INSERT INTO case_totals (grid_key, shard, {', '.join(_NAMES)}) "
               f"SELECT coalesce(grid_id, ''), 0, {sums} FROM \"case\" GROUP BY coalesce(grid_id, '')")


def downgrade() -> None:
    op.execute('DROP TRIGGER IF EXISTS case_totals_insert ON "case"' if op.get_bind().dialect.name == 'postgresql'
               else 'DROP TRIGGER IF EXISTS case_totals_insert')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS case_totals_update ON "case"')
        op.execute('DROP TRIGGER IF EXISTS case_totals_delete ON "case"')
        op.execute('DROP FUNCTION IF EXISTS case_totals_apply()')
    else:
        op.execute('DROP TRIGGER IF EXISTS case_totals_update')
        op.execute('DROP TRIGGER IF EXISTS case_totals_delete')
    op.drop_index('ix_case_open_due', table_name='case')
    op.execute('DROP TABLE case_totals')
