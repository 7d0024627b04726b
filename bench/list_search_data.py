"""Generate a large Switchboard database for bench/list_search.py, in SQL, on PostgreSQL.

The shape: `inboxes` inboxes on eight channels, `agents` agents (one admin, some leads),
each agent a member of 3-6 inboxes, contacts with an identity each, conversations spread
over two years (open ones active in the last month, most resolved), and on average ten
messages per conversation (5-15), of which about 8 % notes and 5 % activity lines, inserted
in time order as a live system would. Text comes from a vocabulary drawn with a Zipf-like
law (a few words in a third of all messages, a long tail), pseudo-words that occur in a few
hundred messages, and reference codes ("ref r12345") that occur in about ten.

Rows go in with the migrated schema's secondary indexes dropped and foreign-key triggers
off, then the indexes are built again from their saved definitions: the schema measured is
exactly what the migrations make.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

BIG_TABLES = ("contacts", "contact_identities", "conversations", "conversation_labels",
              "messages")

FIRST = ("Ada Alan Amara Ana Anton Aiko Bea Ben Carla Chen Chloe Dara Diego Elif Emma Eric "
         "Fatima Femi Grace Hana Hugo Ines Ivan Jack Jana Jonas Karim Kofi Lara Leo Lina "
         "Lucas Maya Mei Mila Nadia Noah Nora Olga Omar Paula Priya Rafael Rosa Sam Sara "
         "Sofia Tariq Theo Uma Vera Viktor Wei Yara Yusuf Zoe").split()
LAST = ("Abara Berg Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lopez "
        "Moreau Nakamura Novak Okafor Petrov Quinn Rossi Silva Schmidt Tanaka Ueda Varga "
        "Weber Xu Yilmaz Zhang Andersen Bianchi Cohen Dimitrov Ferreira Gomez Horvat Ivanova "
        "Kim Larsen Mendes Nowak Oliveira Park Richter Santos Sato Torres Virtanen Wagner "
        "Young").split()
DOMAINS = ("example.com mail.example.org shop.example.net acme.example corp.example "
           "gmail.example outlook.example proton.example").split()
CHANNELS = ("email", "whatsapp", "sms", "webchat", "api", "telegram", "messenger", "instagram")
LABELS = ("billing refund vip bug feature urgent shipping returns warranty invoice "
          "onboarding churn-risk partner press legal security outage feedback upsell "
          "spam").split()
# Support vocabulary, most frequent first (the Zipf rank).
WORDS = """
the to you and i a is for it my on your we this that order with have can be please not
thanks are of in hi hello help account payment delivery will me do just when what there
at if so as but was get our from an need would know could us any time now all here how
about yes no one today issue problem still back received email phone number card update
again new days week please refund invoice price plan subscription cancel login password
reset app website page error working sent message reply team support customer service
shipping package tracking address return item product size color replacement damaged
missing wrong late early morning afternoon evening tomorrow yesterday monday friday
weekend hours minutes office store online checkout cart discount code coupon voucher
bill charge charged twice bank transfer paypal credit debit receipt tax total amount
balance upgrade downgrade trial free premium business personal family shared device
laptop tablet android iphone browser chrome firefox safari install download version
settings profile name change verify verification link expired confirm confirmation
booking reservation appointment schedule reschedule meeting call callback available
manager colleague agent ticket case reference status pending resolved closed open
urgent asap sorry apologies inconvenience understand appreciate great perfect thank
good bad slow fast quickly broken crash freeze bug fix fixed works solved solution
question answer information details document file attachment photo screenshot pdf
contract terms policy privacy data export import delete remove add include exclude
warranty repair technician visit install installation setup configure network wifi
router signal coverage roaming international local abroad travel flight hotel room
ticket seat luggage bag gate boarding check delay delayed cancelled refunded credited
voucher points loyalty member membership renewal renew expire expiry month year annual
monthly weekly daily quote estimate offer deal promotion sale stock available
unavailable backorder preorder ship shipped dispatched courier driver doorstep
neighbour signature collect pickup locker postcode street city country region
""".split()


@dataclass(frozen=True)
class Size:
    """How much to generate."""

    conversations: int
    messages_per_conversation: int  # on average: each gets mean-5 .. mean+5
    inboxes: int
    agents: int
    contacts: int


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    syllables = [a + b for a in "bcdfgklmnprstvz" for b in "aeiou"]
    seen: set[str] = set()
    while len(seen) < count:
        seen.add("".join(rng.choice(syllables) for _ in range(rng.randint(3, 4))))
    return sorted(seen)


def sentences(count: int, seed: int = 7) -> list[str]:
    """Short support-style sentences: Zipf-distributed words, some with a rare pseudo-word."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    tail = _pseudo_words(rng, 20_000)
    out = []
    for _ in range(count):
        words = rng.choices(WORDS, weights, k=rng.randint(5, 11))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(tail))
        out.append(" ".join(words))
    return out


def _arr(values: tuple[str, ...] | list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


Say = Callable[[str], None]


async def _step(conn: asyncpg.Connection, say: Say, what: str, sql: str, *args: object) -> None:
    started = time.monotonic()
    await conn.execute(sql, *args)
    say(f"  {what}: {time.monotonic() - started:.1f} s")


async def _saved_indexes(conn: asyncpg.Connection) -> tuple[list[str], list[str]]:
    """(drop statements, create statements) of the big tables' secondary indexes.

    The statements that create them again also set the statistics targets the migrations
    gave their columns (an expression index's own: `pg_get_indexdef` leaves them out, and
    without them PostgreSQL took a rare word's start for one in 230 rows).
    """
    rows = await conn.fetch(
        """
        SELECT t.relname AS tbl, i.relname AS idx, pg_get_indexdef(x.indexrelid) AS def,
               c.conname, pg_get_constraintdef(c.oid) AS condef,
               (SELECT array_agg(ARRAY[a.attnum::int, a.attstattarget::int])
                FROM pg_attribute a
                WHERE a.attrelid = x.indexrelid AND a.attstattarget > 0) AS targets
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype = 'u'
        WHERE t.relname = ANY($1::text[]) AND NOT x.indisprimary
        """,
        list(BIG_TABLES),
    )
    drops, creates = [], []
    for r in rows:
        if r["conname"]:
            drops.append(f'ALTER TABLE {r["tbl"]} DROP CONSTRAINT {r["conname"]}')
            creates.append(f'ALTER TABLE {r["tbl"]} ADD CONSTRAINT {r["conname"]} {r["condef"]}')
        else:
            drops.append(f'DROP INDEX {r["idx"]}')
            creates.append(r["def"])
        creates += [f'ALTER INDEX {r["idx"]} ALTER COLUMN {n} SET STATISTICS {target}'
                    for n, target in r["targets"] or []]
    return drops, creates


async def generate(conn: asyncpg.Connection, size: Size, password_hash: str, say: Say) -> None:
    """Fill a freshly migrated database (connection to it, as a superuser)."""
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET maintenance_work_mem = '1GB'")
    await conn.execute("SET work_mem = '256MB'")
    # Foreign keys are right by construction; their per-row triggers would triple the time.
    await conn.execute("SET session_replication_role = replica")
    drops, creates = await _saved_indexes(conn)
    for statement in drops:
        await conn.execute(statement)
    say(f"dropped {len(drops)} secondary indexes for the load")

    await conn.execute("CREATE UNLOGGED TABLE bench_sentences (id int PRIMARY KEY, text text)")
    pool = sentences(100_000)
    await conn.copy_records_to_table("bench_sentences", records=list(enumerate(pool, 1)))

    n_inboxes, n_agents = size.inboxes, size.agents
    await _step(conn, say, f"{n_inboxes} inboxes", f"""
        INSERT INTO inboxes (id, name, channel, settings, auto_assign, assignment_policy,
                             requeue_on_offline, created_at)
        SELECT g, 'Inbox ' || g, ({_arr(CHANNELS)})[1 + g % {len(CHANNELS)}], '{{}}', true,
               'round_robin', false, now() - interval '3 years'
        FROM generate_series(1, {n_inboxes}) g""")
    await _step(conn, say, f"{n_agents} agents and their inboxes", f"""
        INSERT INTO agents (id, email, name, password_hash, role, is_active, availability,
                            totp_enabled, password_changed_at, created_at)
        SELECT g, 'agent' || g || '@bench.example', 'Agent ' || g, $1,
               CASE WHEN g = 1 THEN 'admin' WHEN g <= 10 THEN 'lead' ELSE 'agent' END,
               true, 'online', false, now(), now() - interval '3 years'
        FROM generate_series(1, {n_agents}) g""", password_hash)
    await conn.execute(f"""
        INSERT INTO inbox_members (inbox_id, agent_id)
        SELECT DISTINCT 1 + (a * 7 + j * 13) % {n_inboxes}, a
        FROM generate_series(2, {n_agents}) a, generate_series(0, 5) j
        WHERE j < 3 + a % 4""")
    await conn.execute(f"""
        INSERT INTO labels (id, name, name_key, color, created_at)
        SELECT g, ({_arr(LABELS)})[g], lower(({_arr(LABELS)})[g]), '#6b7280', now()
        FROM generate_series(1, {len(LABELS)}) g
        """)

    n_contacts = size.contacts
    await _step(conn, say, f"{n_contacts:,} contacts with an identity each", f"""
        INSERT INTO contacts (id, name, email, phone, attributes, created_at)
        SELECT g, f || ' ' || l,
               lower(f) || '.' || lower(l) || g || '@' || ({_arr(DOMAINS)})[1 + g % {len(DOMAINS)}],
               CASE WHEN g % 2 = 1 THEN '+1' || (2000000000 + g * 37)::text END, '{{}}',
               now() - interval '3 years' + g * interval '1 second'
        FROM (SELECT g, ({_arr(FIRST)})[1 + (g * 7) % {len(FIRST)}] AS f,
                        ({_arr(LAST)})[1 + (g / 3) % {len(LAST)}] AS l
              FROM generate_series(1, {n_contacts}) g) s""")
    await conn.execute("""
        INSERT INTO contact_identities (id, contact_id, kind, value, display_name, created_at)
        SELECT id, id, CASE WHEN phone IS NULL THEN 'email' ELSE 'phone' END,
               coalesce(phone, email), name, created_at
        FROM contacts""")

    n_conv = size.conversations
    # Staged first, then stored in the order they were opened (ids follow time, as live).
    await _step(conn, say, f"{n_conv:,} conversations", f"""
        CREATE UNLOGGED TABLE bench_conv AS
        SELECT s.*, CASE
                 WHEN s.status IN ('open', 'pending', 'snoozed')
                   THEN now() - random() * interval '30 days'
                 ELSE now() - interval '1 day' - random() * interval '729 days' END AS last_at
        FROM (SELECT 1 + floor(random() * {n_inboxes})::int AS inbox_id,
                     1 + floor(random() * {n_contacts})::int AS contact_id,
                     CASE WHEN r < 0.12 THEN 'open' WHEN r < 0.16 THEN 'pending'
                          WHEN r < 0.18 THEN 'snoozed' ELSE 'resolved' END AS status,
                     random() AS r_assign, random() AS r_pick, random() AS r_prio,
                     1 + floor(random() * 100000)::int AS sentence
              FROM (SELECT random() AS r FROM generate_series(1, {n_conv})) g) s;
        WITH members AS (
            SELECT inbox_id, array_agg(agent_id ORDER BY agent_id) AS ids
            FROM inbox_members GROUP BY inbox_id)
        INSERT INTO conversations (id, inbox_id, contact_id, status, assignee_id, identity_id,
                                   subject, priority, waiting_since, last_message_preview,
                                   unread_count, snoozed_until, last_activity_at,
                                   resolved_at, created_at)
        SELECT row_number() OVER (ORDER BY created_at), * FROM (
            SELECT c.inbox_id, c.contact_id, c.status,
                   CASE WHEN c.r_assign < (CASE WHEN c.status = 'resolved' THEN 0.95 ELSE 0.75 END)
                        THEN m.ids[1 + floor(c.r_pick * array_length(m.ids, 1))::int] END,
                   c.contact_id,
                   CASE WHEN i.channel = 'email' THEN left(s.text, 120) END,
                   CASE WHEN c.r_prio < 0.8 THEN 'none' WHEN c.r_prio < 0.88 THEN 'low'
                        WHEN c.r_prio < 0.94 THEN 'medium' WHEN c.r_prio < 0.98 THEN 'high'
                        ELSE 'urgent' END,
                   CASE WHEN c.status = 'open' AND c.r_assign >= 0.75
                        THEN c.last_at - interval '1 hour' END,
                   left(s.text, 100),
                   CASE WHEN c.status = 'open' THEN floor(c.r_pick * 4)::int ELSE 0 END,
                   CASE WHEN c.status = 'snoozed' THEN now() + interval '2 days' END,
                   c.last_at,
                   CASE WHEN c.status = 'resolved' THEN c.last_at END,
                   c.last_at - random() * interval '10 days' AS created_at
            FROM bench_conv c
            JOIN inboxes i ON i.id = c.inbox_id
            LEFT JOIN members m ON m.inbox_id = c.inbox_id
            JOIN bench_sentences s ON s.id = c.sentence) x
        ORDER BY created_at;
        DROP TABLE bench_conv""")
    await _step(conn, say, "labels on about a third of them", f"""
        INSERT INTO conversation_labels (conversation_id, label_id)
        SELECT id, 1 + (id * 7) % {len(LABELS)} FROM conversations WHERE random() < 0.3
        UNION
        SELECT id, 1 + (id * 13) % {len(LABELS)} FROM conversations WHERE random() < 0.08""")

    mean = size.messages_per_conversation
    await conn.execute("""
        CREATE UNLOGGED TABLE bench_msg (conversation_id int, inbox_id int, direction text,
            kind text, text text, contact_id int, agent_id int, status text, at timestamptz)""")
    chunk = 100_000
    started = time.monotonic()
    for lo in range(1, n_conv + 1, chunk):
        await conn.execute(f"""
            INSERT INTO bench_msg
            SELECT m.cid, m.inbox_id,
                   CASE WHEN m.r_kind >= 0.13 AND m.k % 2 = 1 THEN 'in' ELSE 'out' END,
                   CASE WHEN m.r_kind < 0.05 THEN 'activity' WHEN m.r_kind < 0.13 THEN 'note'
                        ELSE 'message' END,
                   CASE WHEN m.r_kind < 0.05 THEN 'Status changed by Agent '
                                             || coalesce(m.assignee_id::text, '1')
                        ELSE s1.text || ' ' || s2.text
                             || CASE WHEN m.r_ref < 0.05
                                     THEN ' ref r' || (10000 + floor(m.r_code * 50000))::int
                                     ELSE '' END END,
                   CASE WHEN m.r_kind >= 0.13 AND m.k % 2 = 1 THEN m.contact_id END,
                   CASE WHEN m.r_kind < 0.13 OR m.k % 2 = 0 THEN m.assignee_id END,
                   CASE WHEN m.r_kind >= 0.13 AND m.k % 2 = 0 THEN 'delivered' END,
                   m.created_at + (m.last_activity_at - m.created_at) * (m.k::float8 / m.n)
            FROM (SELECT c.id AS cid, c.inbox_id, c.contact_id, c.assignee_id, c.created_at,
                         c.last_activity_at, k, {mean - 5} + c.id % 11 AS n,
                         random() AS r_kind, random() AS r_ref, random() AS r_code,
                         1 + floor(random() * 100000)::int AS a,
                         1 + floor(random() * 100000)::int AS b
                  FROM conversations c, generate_series(1, {mean - 5} + c.id % 11) k
                  WHERE c.id >= {lo} AND c.id < {lo + chunk}) m
            JOIN bench_sentences s1 ON s1.id = m.a
            JOIN bench_sentences s2 ON s2.id = m.b""")
        done = min(lo + chunk - 1, n_conv)
        say(f"  messages staged for {done:,} / {n_conv:,} conversations "
            f"({time.monotonic() - started:.0f} s)")
    await _step(conn, say, "messages stored in time order", """
        INSERT INTO messages (conversation_id, inbox_id, direction, kind, text, contact_id,
                              agent_id, status, attachments, meta, accepted_at, created_at)
        SELECT conversation_id, inbox_id, direction, kind, text, contact_id, agent_id, status,
               '[]', '{}', at, at
        FROM bench_msg ORDER BY at;
        DROP TABLE bench_msg; DROP TABLE bench_sentences""")
    for table in ("inboxes", "agents", "contacts", "contact_identities", "conversations",
                  "labels"):
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"(SELECT max(id) FROM {table}))")
    await conn.execute("SET session_replication_role = origin")
    await conn.execute("SET max_parallel_maintenance_workers = 2")
    for statement in creates:
        await _step(conn, say, statement[:90], statement)
    for table in BIG_TABLES:
        await _step(conn, say, f"vacuum analyze {table}", f"VACUUM (ANALYZE) {table}")


async def timed(say: Say, what: str, action: Awaitable[None]) -> None:
    """Run `action`, saying how long it took."""
    started = time.monotonic()
    await action
    say(f"{what}: {time.monotonic() - started:.0f} s")
