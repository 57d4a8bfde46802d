-- kjournal schema, version 4: who ran each reconcile pass. With several
-- kjournald instances on one cluster (a Lease-elected holder and its
-- standbys, or one instance per Kyuubi server) the audit says which
-- instance (its --identity) planned each run and made each request. NULL for
-- runs and actions recorded before version 4, and for passes run by the
-- kjournal CLI without an identity.

ALTER TABLE reconcile_runs ADD COLUMN identity TEXT;
ALTER TABLE reconcile_actions ADD COLUMN identity TEXT;
