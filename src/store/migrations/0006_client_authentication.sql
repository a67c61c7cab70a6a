-- 0006: how the service authenticates to a source payer's token endpoint (issue #12). Existing
-- definitions keep today's behaviour (HTTP Basic with client_id and client_secret). private_key_jwt
-- signs a JWT with the service's own keys (exchange.clientSigningKeys; never in the database), as SMART
-- Backend Services asks; system_scopes are the scopes of its client_credentials tokens.
ALTER TABLE oidc_servers ADD COLUMN token_endpoint_auth_method text NOT NULL DEFAULT 'client_secret_basic';
ALTER TABLE oidc_servers ADD CONSTRAINT oidc_servers_token_endpoint_auth_method_known
  CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post', 'private_key_jwt'));
-- A signed assertion names its client: private_key_jwt without a client id could never be used.
ALTER TABLE oidc_servers ADD CONSTRAINT oidc_servers_private_key_jwt_has_client_id
  CHECK (token_endpoint_auth_method <> 'private_key_jwt' OR client_id IS NOT NULL);
ALTER TABLE oidc_servers ADD COLUMN system_scopes text;
