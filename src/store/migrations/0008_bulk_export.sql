-- 0008: bulk export retrieval for payer-mediated jobs (issue #12, retrieval "export"). After the
-- match the job kicks off Patient/{id}/$export, polls the status URL the source gave until the
-- manifest, then reads the manifest's NDJSON files in chunks of exchange.pageSize resources, each
-- chunk written and recorded like a page, with the place to go on from (export_cursor), so a resumed
-- job continues from the last recorded file and line.
ALTER TABLE batch_jobs ADD COLUMN retrieval text NOT NULL DEFAULT 'everything';
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_retrieval_known
  CHECK (retrieval = 'everything' OR (retrieval = 'export' AND flow = 'payer'));
ALTER TABLE batch_jobs ADD COLUMN export_status_url text;  -- the kick-off's Content-Location, under the fhirEndpoint
ALTER TABLE batch_jobs ADD COLUMN export_progress text;    -- the last X-Progress (at most 100 characters)
ALTER TABLE batch_jobs ADD COLUMN export_manifest jsonb;   -- transactionTime, requiresAccessToken, output, error
ALTER TABLE batch_jobs ADD COLUMN export_cursor jsonb;     -- {"file": i, "line": n}: where the next chunk starts
