-- 0010: the member connect flow keeps what it found when it sent the member to sign in: the issuer,
-- the client id and scope in the authorization URL, and the token endpoint and JWK Set URL of the
-- payer's discovery document (or the definition's token endpoint). The callback sends the code there and verifies the id
-- token with those keys, instead of reading the definition and the discovery document again: a
-- definition changed, or a discovery document changed or gone, while the member signs in cannot send
-- the code, the PKCE verifier and the client's credentials elsewhere. NULL on rows made before this
-- migration: their callback reads the discovery document as before.
ALTER TABLE member_authorizations ADD COLUMN issuer text;
ALTER TABLE member_authorizations ADD COLUMN client_id text;
ALTER TABLE member_authorizations ADD COLUMN scope text;
ALTER TABLE member_authorizations ADD COLUMN token_endpoint text;
ALTER TABLE member_authorizations ADD COLUMN jwks_uri text;
