"""Durable local message bus on SQLite, with Pub/Sub's delivery semantics.

- A topic fans each published message out to every subscription it has at publish time
  (a message published to a topic without subscriptions is dropped, as on Pub/Sub).
- ``pull`` leases a message to one consumer: the lease is a random token and an expiry.
  ack/nack/extend only act while the caller still holds the lease, so a consumer whose
  deadline passed cannot ack a message that has since been leased to another one.
- A message whose lease expires, or that is nacked (after the retry backoff), is delivered
  again with ``delivery_attempt`` one higher; once it has been delivered ``max_delivery_attempts``
  times, the next redelivery forwards it to the dead-letter topic instead, with the
  attributes Pub/Sub adds (``CloudPubSubDeadLetterSourceSubscription``, ...).
- Every state change is one ``BEGIN IMMEDIATE`` transaction, so any number of threads and
  OS processes can share the file.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from .. import tracing
from ..sqlite_util import SqliteDatabase
from . import BusError, MessageBus, ReceivedMessage, SubscriptionConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    ack_deadline REAL NOT NULL,
    dead_letter_topic TEXT,
    max_attempts INTEGER NOT NULL,
    push_endpoint TEXT,
    min_backoff REAL NOT NULL DEFAULT 1,
    max_backoff REAL NOT NULL DEFAULT 60
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    publish_time REAL NOT NULL,
    delivery_attempt INTEGER NOT NULL DEFAULT 0,
    lease_token TEXT,
    lease_expires REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (subscription, lease_expires, id)
"""


class SqliteMessage(ReceivedMessage):
    def __init__(self, bus: "SqliteBus", row_id: int, token: str, subscription: str, message_id: str,
                 data: bytes, attributes: dict, delivery_attempt: int, publish_time: float):
        self._bus = bus
        self._row_id = row_id
        self._token = token
        self.subscription = subscription
        self.message_id = message_id
        self.data = data
        self.attributes = attributes
        self.delivery_attempt = delivery_attempt
        self.publish_time = publish_time

    def ack(self) -> None:
        self._bus._settle(self._row_id, self._token, "DELETE FROM messages WHERE id = ? AND lease_token = ?")

    def nack(self) -> None:
        config = self._bus.subscription_config(self.subscription)
        with self._bus.db.transaction() as conn:
            conn.execute("UPDATE messages SET lease_token = NULL, lease_expires = ? WHERE id = ? AND lease_token = ?",
                         (self._bus._clock() + config.backoff(self.delivery_attempt), self._row_id, self._token))

    def extend(self, seconds: int) -> None:
        with self._bus.db.transaction() as conn:
            conn.execute("UPDATE messages SET lease_expires = ? WHERE id = ? AND lease_token = ?",
                         (time.time() + seconds, self._row_id, self._token))


class SqliteBus(MessageBus):
    def __init__(self, path: Path, *, clock=time.time):
        self.db = SqliteDatabase(path, SCHEMA)
        self._clock = clock
        with self.db.transaction() as conn:  # bus files from before the retry backoff
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(subscriptions)")}
            for column, default in (("min_backoff", 1), ("max_backoff", 60)):
                if column not in columns:
                    conn.execute(f"ALTER TABLE subscriptions ADD COLUMN {column} REAL NOT NULL DEFAULT {default}")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "SqliteBus":
        """The local stack's one bus file, shared by every process."""
        return cls(Path(data_dir) / "bus.sqlite3")

    def ensure_topic(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO topics (name) VALUES (?)", (name,))

    def ensure_subscription(self, config: SubscriptionConfig) -> None:
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM topics WHERE name = ?", (config.topic,)).fetchone():
                raise BusError(f"topic {config.topic!r} does not exist")
            conn.execute(
                "INSERT INTO subscriptions (name, topic, ack_deadline, dead_letter_topic, max_attempts, push_endpoint, "
                "min_backoff, max_backoff) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "topic = excluded.topic, ack_deadline = excluded.ack_deadline, "
                "dead_letter_topic = excluded.dead_letter_topic, max_attempts = excluded.max_attempts, "
                "push_endpoint = excluded.push_endpoint, min_backoff = excluded.min_backoff, "
                "max_backoff = excluded.max_backoff",
                (config.name, config.topic, config.ack_deadline_seconds, config.dead_letter_topic,
                 config.max_delivery_attempts, config.push_endpoint, config.min_backoff_seconds,
                 config.max_backoff_seconds),
            )

    def subscription_config(self, name: str) -> SubscriptionConfig:
        row = self.db.connection().execute("SELECT * FROM subscriptions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise BusError(f"subscription {name!r} does not exist")
        return SubscriptionConfig(row["name"], row["topic"], row["ack_deadline"], row["dead_letter_topic"],
                                  row["max_attempts"], row["push_endpoint"], min_backoff_seconds=row["min_backoff"],
                                  max_backoff_seconds=row["max_backoff"])

    def push_subscriptions(self) -> list[SubscriptionConfig]:
        rows = self.db.connection().execute("SELECT name FROM subscriptions WHERE push_endpoint IS NOT NULL")
        return [self.subscription_config(row["name"]) for row in rows]

    def _publish_in(self, conn, topic: str, data: bytes, attributes: dict[str, str], message_id: str) -> None:
        if not conn.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone():
            raise BusError(f"topic {topic!r} does not exist")
        subs = [row["name"] for row in conn.execute("SELECT name FROM subscriptions WHERE topic = ?", (topic,))]
        now = self._clock()
        conn.executemany(
            "INSERT INTO messages (subscription, message_id, data, attributes, publish_time) VALUES (?, ?, ?, ?, ?)",
            [(sub, message_id, data, json.dumps(attributes), now) for sub in subs],
        )

    def publish(self, topic: str, data: bytes, attributes: dict[str, str] | None = None) -> str:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("message data must be bytes")
        attributes = {str(k): str(v) for k, v in (attributes or {}).items()}
        message_id = uuid.uuid4().hex
        with tracing.publishing(topic, attributes) as attributes:  # the trace rides in the attributes
            with self.db.transaction() as conn:
                self._publish_in(conn, topic, bytes(data), attributes, message_id)
        return message_id

    def pull(self, subscription: str, max_messages: int = 10, timeout: float = 0.0) -> list[ReceivedMessage]:
        config = self.subscription_config(subscription)
        end = time.monotonic() + timeout
        delay = 0.02
        while True:
            messages = self._lease(config, max_messages)
            if messages or time.monotonic() >= end:
                return messages
            time.sleep(min(delay, max(0.0, end - time.monotonic())))
            delay = min(delay * 2, 0.05)

    def _lease(self, config: SubscriptionConfig, max_messages: int) -> list[ReceivedMessage]:
        leased: list[ReceivedMessage] = []
        # Idle polls only read (WAL readers never block writers); the write lock is taken
        # only when there is something to lease.
        if not self.db.connection().execute(
                "SELECT 1 FROM messages WHERE subscription = ? AND lease_expires <= ? LIMIT 1",
                (config.name, self._clock())).fetchone():
            return leased
        with self.db.transaction() as conn:
            now = self._clock()
            rows = conn.execute(
                "SELECT * FROM messages WHERE subscription = ? AND lease_expires <= ? ORDER BY id LIMIT ?",
                (config.name, now, max_messages * 2 + 10),
            ).fetchall()
            for row in rows:
                if len(leased) >= max_messages:
                    break
                if config.dead_letter_topic and row["delivery_attempt"] >= config.max_delivery_attempts:
                    attributes = json.loads(row["attributes"])
                    attributes.update({
                        "CloudPubSubDeadLetterSourceSubscription": config.name,
                        "CloudPubSubDeadLetterSourceDeliveryCount": str(row["delivery_attempt"]),
                    })
                    self._publish_in(conn, config.dead_letter_topic, row["data"], attributes, row["message_id"])
                    conn.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
                    continue
                token = uuid.uuid4().hex
                attempt = row["delivery_attempt"] + 1
                conn.execute("UPDATE messages SET lease_token = ?, lease_expires = ?, delivery_attempt = ? WHERE id = ?",
                             (token, now + config.ack_deadline_seconds, attempt, row["id"]))
                leased.append(SqliteMessage(self, row["id"], token, config.name, row["message_id"],
                                            bytes(row["data"]), json.loads(row["attributes"]), attempt,
                                            row["publish_time"]))
        return leased

    def _settle(self, row_id: int, token: str, sql: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(sql, (row_id, token))

    def backlog(self, subscription: str) -> int:
        self.subscription_config(subscription)
        row = self.db.connection().execute("SELECT COUNT(*) AS n FROM messages WHERE subscription = ?",
                                           (subscription,)).fetchone()
        return int(row["n"])

    def check(self) -> None:
        self.db.connection().execute("SELECT 1").fetchone()

    def close(self) -> None:
        self.db.close()
