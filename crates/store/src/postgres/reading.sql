-- Tidings PostgreSQL schema: the full text as Reading reads it. Append-only (migrate.rs).
--
-- Each text table keeps its words as a stored `tsvector` (`words`), and the GIN index is
-- on that column instead of on `to_tsvector('simple', text)`. The index alone was not
-- enough: a search must test rows too (a phrase is rechecked on the row; a word in most
-- messages is tested row by row while walking the dates; the planner may choose a scan),
-- and `to_tsvector` of a body costs about half a millisecond: a search for a common word
-- took a minute at 100,000 messages when the planner chose to compute it for every row.
-- The words are computed once, when the row is written, as the index expression was.
-- The text stays: it is what `words` is made of, and the subject filter reads the head's.

ALTER TABLE email_text_head
    ADD COLUMN words tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
DROP INDEX email_text_head_words;
CREATE INDEX email_text_head_words ON email_text_head
    USING gin (words) WITH (gin_pending_list_limit = 32768);

ALTER TABLE email_text_body
    ADD COLUMN words tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
DROP INDEX email_text_body_words;
CREATE INDEX email_text_body_words ON email_text_body
    USING gin (words) WITH (gin_pending_list_limit = 32768);

