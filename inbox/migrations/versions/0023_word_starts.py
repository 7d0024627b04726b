"""Search: the first letters of every word of a message, indexed (PostgreSQL)

A word being typed ("paym") was looked up as a partial match ('paym':*): GIN collects every
row of every word starting so into a bitmap before intersecting it with the other words
(184 ms for "refund paym" at ten million messages). Stored as lexemes of their own
(">pay", ">paym", up to six letters), a word's starts are looked up like whole words, and
GIN skips through them (about 30 ms). The index is on an expression, so the table is not
rewritten; on a large install it can be built beforehand without blocking writes:

    CREATE INDEX CONCURRENTLY ix_search_messages_starts ON messages
        USING gin (switchboard_word_starts(search_vector));

and this migration then leaves it as it is.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The vector's own lexemes, and ">" followed by the first 3 to 6 letters of each: the
# vector is kept whole so that a query's other words are found in the same index lookup.
# inbox/search.py (STARTS_MOST) writes the queries for it.
FUNCTION = """
CREATE OR REPLACE FUNCTION switchboard_word_starts(vector tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT vector || coalesce(array_to_tsvector(array(
        SELECT DISTINCT '>' || left(word, n)
        FROM unnest(tsvector_to_array(vector)) AS word, generate_series(3, 6) AS n
        WHERE char_length(word) >= n)), ''::tsvector)
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's FTS5 finds a word's start in its sorted terms (migration 0005)
    op.execute(FUNCTION)
    op.execute("CREATE INDEX IF NOT EXISTS ix_search_messages_starts ON messages "
               "USING gin (switchboard_word_starts(search_vector))")
    # Rare starts known to be rare, as for the words (migration 0005).
    op.execute("ALTER INDEX ix_search_messages_starts ALTER COLUMN 1 SET STATISTICS 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_search_messages_starts")
    op.execute("DROP FUNCTION IF EXISTS switchboard_word_starts(tsvector)")
