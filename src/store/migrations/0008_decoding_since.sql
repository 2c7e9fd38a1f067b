-- When the image's worker started decoding it; NULL while it is not decoding (fetching,
-- storing, waiting for decode budget) or not processing at all (docs/adr/0010). A job
-- taken again while its image is still `processing` had a worker die on it: that
-- attempt counts only if the worker died decoding this image (a decoded-memory bomb
-- kills its worker there); else it is given back, as to the other images in flight.
ALTER TABLE images ADD COLUMN decoding_since timestamptz;

-- 0007 grants the worker UPDATE on the whole table, which covers a new column too;
-- granted by name as well, so that narrowing 0007's grant to columns cannot drop it.
GRANT UPDATE (decoding_since) ON images TO nimbus_worker;
