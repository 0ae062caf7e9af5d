-- The database itself belongs to memops_audit_owner from this version on, no longer to
-- the application role: a database's owner may DROP DATABASE (every tenant's memory and
-- the audit log with it), give the database away, or change its connection limit and
-- the settings its sessions start with. This file does not change the owner: a
-- database's owner and its database-level grants live outside it (no dump carries
-- them). The postgresql role hands the database over once this is applied and gives it
-- back before this is reverted; a whole restore does the same
-- (memops.audit_owner.hand_over). The application keeps CONNECT and TEMPORARY on the
-- database, which the postgresql role grants it by name.
--
-- Until now the application role held its rights in here through pg_database_owner
-- (0004, 0007), that is as the database's owner; handed over, the database would take
-- them to memops_audit_owner. So the application role gets them by name:
--   USAGE on the schema public (not CREATE: migrations create objects with
--   memops_audit_owner lent, which owns public; the application creates none, and its
--   temporary tables need only TEMPORARY on the database);
--   SELECT, INSERT, UPDATE, DELETE on memory_items;
--   SELECT, INSERT, DELETE on memory_quarantine (row security lets the application only
--   read it; memops writes it as postgresql_ops_user, a member of the application role);
--   SELECT, INSERT on execution_audit_log and SELECT on its sequence (pg_dump reads it).
-- The grants to pg_database_owner stay: they are now memops_audit_owner's (it owns all
-- of this anyway), and the application's again when a down gives the database back.
--
-- The grantee is the migrating role (the deploy migrates as the application role), or
-- the role the setting memops.app_role names: memops.audit_owner.secure sets it to run
-- this file again, as the superuser, in a database a restore has loaded (giving a table
-- to a new owner folds a role's grants from when it owned the table into the owner's).
-- A superuser or memops_audit_owner as grantee would leave the application without
-- its rights: refused. Like 0004 and 0007 it needs membership in memops_audit_owner,
-- which owns the objects (without it, GRANT would only warn and grant nothing). Every
-- statement here can run twice.
DO $$
DECLARE
    app name := coalesce(nullif(current_setting('memops.app_role', true), ''), current_user);
BEGIN
    IF NOT pg_has_role(current_user, 'memops_audit_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of memops_audit_owner', current_user
            USING HINT = 'migrate through the deploy, which lends the membership for the migration (memops.audit_owner.lent)';
    END IF;
    IF app = 'memops_audit_owner'
       OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app AND NOT rolsuper) THEN
        RAISE EXCEPTION 'role % is not the application role: it cannot be given the application''s rights', app
            USING HINT = 'migrate as the application role, as the deploy does (or set memops.app_role to it)';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON memory_items TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON memory_quarantine TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON execution_audit_log TO %I', app);
    EXECUTE format('GRANT SELECT ON SEQUENCE execution_audit_log_id_seq TO %I', app);
END
$$;
