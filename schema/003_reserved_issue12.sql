-- PLACEHOLDER, not a migration: schema version 3 belongs to issue 12 (session
-- type). This file exists only so that branch i14-lease builds (the loader
-- wants migrations numbered without gaps); drop it when merging, in favour of
-- issue 12's 003.
SELECT 1;
