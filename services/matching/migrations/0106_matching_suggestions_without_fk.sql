-- A suggestion row is written only in the transaction that writes its request row, right
-- after it (store/postgres.py `save_answers`); checking the reference row by row cost about a
-- third of writing an answer's 50 suggestions, for a fact the one writer already ensures.
ALTER TABLE matching_suggestions DROP CONSTRAINT IF EXISTS matching_suggestions_request_id_fkey;
