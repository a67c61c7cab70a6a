-- 0001: the registry of source payers (OIDC server definitions).
-- Public contract: admins edit this table with SQL (docs/admin-sql.md). The rules live here, in the
-- database, so an edit made with psql is held to the same rules as one made through configuration.

CREATE FUNCTION p2p_is_absolute_http_url(value text) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
  -- scheme http or https, a host (no user-info, no blanks), then an optional path, query or fragment
  SELECT value ~* '^https?://[^][/?#@:[:space:]]+(:[0-9]{1,5})?([/?#][^[:space:]]*)?$'
      OR value ~* '^https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?([/?#][^[:space:]]*)?$'
$$;

CREATE TABLE oidc_servers (
  pid                 serial PRIMARY KEY,
  name                text NOT NULL,
  issuer              text NOT NULL,
  client_id           text,
  client_secret       text,
  jwk_text            text,
  jwk_file            text,
  auth_well_known     text,
  scopes              text,
  fhir_endpoint       text,
  token_endpoint      text,
  custom_token_params text,
  response_type       text NOT NULL DEFAULT 'code',
  organization_id     text,
  notes               text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT oidc_servers_name_not_blank CHECK (btrim(name) <> ''),
  CONSTRAINT oidc_servers_issuer_is_http_url CHECK (p2p_is_absolute_http_url(issuer)),
  CONSTRAINT oidc_servers_auth_well_known_is_http_url
    CHECK (auth_well_known IS NULL OR p2p_is_absolute_http_url(auth_well_known)),
  CONSTRAINT oidc_servers_fhir_endpoint_is_http_url
    CHECK (fhir_endpoint IS NULL OR p2p_is_absolute_http_url(fhir_endpoint)),
  CONSTRAINT oidc_servers_token_endpoint_is_http_url
    CHECK (token_endpoint IS NULL OR p2p_is_absolute_http_url(token_endpoint)),
  CONSTRAINT oidc_servers_response_type_known CHECK (response_type IN (
    'code', 'token', 'id_token', 'id_token token', 'code id_token', 'code token', 'code id_token token', 'none')),
  CONSTRAINT oidc_servers_one_jwk_source CHECK (jwk_text IS NULL OR jwk_file IS NULL),
  CONSTRAINT oidc_servers_jwk_text_is_json_object
    CHECK (jwk_text IS NULL OR jsonb_typeof(jwk_text::jsonb) = 'object')
);

-- The issuer identifies a definition; a trailing slash does not make a different one (seed: "any
-- trailing slash will be ignored").
CREATE UNIQUE INDEX oidc_servers_issuer_normalized_key ON oidc_servers ((rtrim(issuer, '/')));

CREATE FUNCTION p2p_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TRIGGER oidc_servers_touch_updated_at BEFORE UPDATE ON oidc_servers
  FOR EACH ROW EXECUTE FUNCTION p2p_touch_updated_at();

COMMENT ON TABLE oidc_servers IS 'Source payers (OIDC server definitions) that members can move their records from.';
COMMENT ON COLUMN oidc_servers.client_secret IS 'Token introspection client secret. Never returned by the API or logged.';
COMMENT ON COLUMN oidc_servers.jwk_text IS 'JWK as JSON text (usually the public key only). Never returned by the API.';
COMMENT ON COLUMN oidc_servers.jwk_file IS 'Path of a file holding the JWK, read by the service. Never returned by the API.';
COMMENT ON COLUMN oidc_servers.response_type IS 'One of: code, token, id_token, id_token token, code id_token, code token, code id_token token, none.';
COMMENT ON COLUMN oidc_servers.organization_id IS 'Payer id of the source organization (e.g. a five-digit payer id).';
