"""Versioned schema migrations, applied in order at start-up (once, under a lock).

Each migration is a list of portable statements; `schema_version` records what ran. Never edit
a released migration: add the next one.
"""

from __future__ import annotations

from typing import Final

#: (version, description, statements)
MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE applications (
                name TEXT PRIMARY KEY,
                application_id TEXT NOT NULL UNIQUE,
                create_time DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL)""",
            """CREATE TABLE deployment_configs (
                name TEXT PRIMARY KEY,
                config_id TEXT NOT NULL UNIQUE,
                create_time DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL)""",
            """CREATE TABLE deployment_groups (
                application_name TEXT NOT NULL,
                name TEXT NOT NULL,
                group_id TEXT NOT NULL UNIQUE,
                doc TEXT NOT NULL,
                PRIMARY KEY (application_name, name))""",
            """CREATE TABLE revisions (
                application_name TEXT NOT NULL,
                revision_key TEXT NOT NULL,
                register_time DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (application_name, revision_key))""",
            """CREATE TABLE instances (
                name TEXT PRIMARY KEY,
                registered INTEGER NOT NULL,
                register_time DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL)""",
            """CREATE TABLE instance_tags (
                instance_name TEXT NOT NULL,
                tag_key TEXT NOT NULL,
                tag_value TEXT NOT NULL,
                PRIMARY KEY (instance_name, tag_key))""",
            """CREATE TABLE deployments (
                deployment_id TEXT PRIMARY KEY,
                application_name TEXT NOT NULL,
                group_name TEXT NOT NULL,
                status TEXT NOT NULL,
                create_time DOUBLE PRECISION NOT NULL,
                complete_time DOUBLE PRECISION,
                owner TEXT,
                lease_until DOUBLE PRECISION,
                doc TEXT NOT NULL)""",
            "CREATE INDEX deployments_by_group ON deployments (application_name, group_name)",
            "CREATE INDEX deployments_by_status ON deployments (status)",
            """CREATE TABLE deployment_targets (
                deployment_id TEXT NOT NULL,
                target_id TEXT NOT NULL,
                status TEXT NOT NULL,
                position INTEGER NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (deployment_id, target_id))""",
            """CREATE TABLE job_executions (
                thing TEXT NOT NULL,
                job_id TEXT NOT NULL,
                execution_number BIGINT NOT NULL,
                status TEXT NOT NULL,
                version_number BIGINT NOT NULL,
                queued_at DOUBLE PRECISION NOT NULL,
                step_deadline DOUBLE PRECISION,
                doc TEXT NOT NULL,
                PRIMARY KEY (thing, job_id))""",
            "CREATE INDEX job_executions_pending ON job_executions (thing, status)",
            """CREATE TABLE presence (
                thing TEXT PRIMARY KEY,
                online INTEGER NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                doc TEXT NOT NULL)""",
            """CREATE TABLE counters (
                name TEXT PRIMARY KEY,
                value BIGINT NOT NULL)""",
        ),
    ),
    (
        2,
        "instance health per deployment group (rollout engine; the API's scheduling order)",
        (
            """CREATE TABLE instance_health (
                group_id TEXT NOT NULL,
                instance_name TEXT NOT NULL,
                healthy INTEGER NOT NULL,
                revision TEXT,
                deployment_id TEXT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (group_id, instance_name))""",
        ),
    ),
)
