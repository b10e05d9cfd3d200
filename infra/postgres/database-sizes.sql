-- The sizes of the stack's databases for the tracking server's housekeeping report
-- (services/mlflow/proxied-artifacts/mlflow_stack_registry/housekeeping.py), run by postgres-init
-- as the superuser in MLflow's database on every `make up`. Each service's role may connect only
-- to its own database (init-databases.sh revokes CONNECT from PUBLIC), and pg_database_size needs
-- CONNECT: this function, owned by the superuser, answers sizes and nothing else, to the one role
-- granted it, rather than giving that role pg_read_all_stats (every session's query text).
-- It lives in a schema of its own, which `make backup` leaves out of the dump (postgres-init
-- makes it again after a restore): a dump restored as MLflow's role cannot create it.
CREATE SCHEMA IF NOT EXISTS platform_admin AUTHORIZATION postgres;
REVOKE ALL ON SCHEMA platform_admin FROM PUBLIC;
CREATE OR REPLACE FUNCTION platform_admin.database_sizes()
RETURNS TABLE (name text, bytes bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
    SELECT datname::text, pg_database_size(oid) FROM pg_database WHERE NOT datistemplate
$$;
REVOKE ALL ON FUNCTION platform_admin.database_sizes() FROM PUBLIC;
SELECT format('GRANT USAGE ON SCHEMA platform_admin TO %I', :'reader') \gexec
SELECT format('GRANT EXECUTE ON FUNCTION platform_admin.database_sizes() TO %I', :'reader') \gexec
