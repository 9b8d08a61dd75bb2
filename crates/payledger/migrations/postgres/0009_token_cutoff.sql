-- Access tokens issued before this moment are refused: set when a user's password changes, when the user is
-- disabled, and when one of their refresh tokens is used twice (the copy's access tokens stop at once, not
-- when they expire).
ALTER TABLE users ADD COLUMN tokens_valid_after TIMESTAMPTZ;
