"""Search: every two words in a row of a message, indexed (PostgreSQL)

A phrase of two common words ("please help") was looked up as both words anywhere: 106,652
of ten million messages have both, 6,131 have them in a row, and each of the others was
fetched and checked for nothing; or it was found by walking the newest messages until a page
was full, half a million rows for a phrase this rare. Stored as lexemes of their own
("please help"), a phrase's pairs of words are looked up like words, and only the rows that
have them are fetched. The index is on an expression, so the table is not rewritten; on a
large install it can be built beforehand without blocking writes:

    CREATE INDEX CONCURRENTLY ix_search_messages_pairs ON messages
        USING gin (switchboard_word_pairs(search_vector));

(after creating the function below) and this migration then leaves it as it is.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each lexeme followed by a space and the lexeme at the next position: the positions the
# vector keeps are those a phrase query (<->) checks, so every row a phrase matches has its
# pairs. inbox/search.py (_Match.pairs) writes the queries for it.
FUNCTION = """
CREATE OR REPLACE FUNCTION switchboard_word_pairs(vector tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_to_tsvector(array(
        SELECT DISTINCT word || ' ' || next
        FROM (SELECT u.lexeme AS word, p, lead(u.lexeme) OVER (ORDER BY p) AS next,
                     lead(p) OVER (ORDER BY p) AS after
              FROM unnest(vector) AS u, unnest(u.positions) AS p) AS w
        WHERE after = p + 1)), ''::tsvector)
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's FTS5 checks a phrase's positions in its own index (migration 0005)
    op.execute(FUNCTION)
    op.execute("CREATE INDEX IF NOT EXISTS ix_search_messages_pairs ON messages "
               "USING gin (switchboard_word_pairs(search_vector))")
    # Rare pairs known to be rare, as for the words (migration 0005); and known at once:
    # without statistics on the new expression, PostgreSQL guesses that a pair is in 0.5 %
    # of the rows, and a rare phrase is walked for instead of looked up (20 s at ten
    # million messages).
    op.execute("ALTER INDEX ix_search_messages_pairs ALTER COLUMN 1 SET STATISTICS 1000")
    op.execute("ANALYZE messages")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_search_messages_pairs")
    op.execute("DROP FUNCTION IF EXISTS switchboard_word_pairs(tsvector)")
