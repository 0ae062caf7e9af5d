-- Append-only audit log of what operators and jobs did to the memory stack.
--
-- Triggers refuse UPDATE and DELETE (per row) and TRUNCATE (per statement).
-- They are ENABLE ALWAYS so that session_replication_role = replica (as used
-- by pg_restore --disable-triggers and replication tools) does not bypass
-- them. The table owner can still disable or drop the triggers: give the
-- application role INSERT and SELECT only, and let only the migration owner
-- own the table. The sanctioned way to remove the log is the down migration.
CREATE TABLE execution_audit_log (
    id        bigint      GENERATED ALWAYS AS IDENTITY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    tenant_id text,
    details   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT execution_audit_log_pkey PRIMARY KEY (id),
    CONSTRAINT execution_audit_log_actor_check CHECK (actor <> ''),
    CONSTRAINT execution_audit_log_action_check CHECK (action <> ''),
    CONSTRAINT execution_audit_log_details_check CHECK (jsonb_typeof(details) = 'object')
);

CREATE INDEX execution_audit_log_at_idx ON execution_audit_log (at);
CREATE INDEX execution_audit_log_tenant_at_idx ON execution_audit_log (tenant_id, at)
    WHERE tenant_id IS NOT NULL;

CREATE FUNCTION execution_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'execution_audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'audit rows can only be inserted; the table is removed only by its down migration';
END
$$;

CREATE TRIGGER execution_audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON execution_audit_log
    FOR EACH ROW EXECUTE FUNCTION execution_audit_log_append_only();

CREATE TRIGGER execution_audit_log_no_truncate
    BEFORE TRUNCATE ON execution_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION execution_audit_log_append_only();

ALTER TABLE execution_audit_log ENABLE ALWAYS TRIGGER execution_audit_log_no_update_delete;
ALTER TABLE execution_audit_log ENABLE ALWAYS TRIGGER execution_audit_log_no_truncate;
