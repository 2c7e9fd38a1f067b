-- The tally reconciler re-counts the ballots of the last few minutes. Ballots arrive in
-- time order, so a BRIN index finds them for almost no write cost on the vote path.
CREATE INDEX ballots_created ON ballots USING brin (created_at);
