-- A direct upload's completion check runs once at a time: the instance that copies and
-- checks the object holds this lease on its reservation (ADR 0005). NULL: unclaimed.
ALTER TABLE images ADD COLUMN checking_until timestamptz;
