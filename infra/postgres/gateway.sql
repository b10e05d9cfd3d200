-- The Prefect gateway's tables (services/gateway), run by postgres-init as the superuser in the
-- gateway's database on every `make up`. The tables belong to the superuser: the gateway's role
-- may add to the audit log and read it, never change or delete an entry.
CREATE TABLE IF NOT EXISTS gateway_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    role text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    status integer NOT NULL,
    client text,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS gateway_audit_username ON gateway_audit (username, id);

-- Accounts of workers on other hosts (`make worker-env`) and the work queues each may poll.
CREATE TABLE IF NOT EXISTS gateway_workers (
    username text PRIMARY KEY,
    work_queues text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON gateway_audit, gateway_workers FROM PUBLIC;
GRANT SELECT, INSERT ON gateway_audit TO :"gateway_role";
GRANT USAGE ON SEQUENCE gateway_audit_id_seq TO :"gateway_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON gateway_workers TO :"gateway_role";
