-- 0002: tell running services when oidc_servers changes, so they can cache reads and still show an
-- admin's SQL edit at once. One notification per statement, delivered when the transaction commits.

CREATE FUNCTION p2p_notify_oidc_servers_changed() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
  PERFORM pg_notify('p2p_oidc_servers_changed', TG_OP);
  RETURN NULL;
END
$$;

CREATE TRIGGER oidc_servers_notify_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON oidc_servers
  FOR EACH STATEMENT EXECUTE FUNCTION p2p_notify_oidc_servers_changed();
