-- The organization's name folded to lower case by payledger itself (Unicode-aware, so Cyrillic folds too;
-- SQLite's LOWER folds only ASCII), for case-insensitive search that behaves the same on both backends.
-- Rows written before this column are filled in by payledger at start-up.
ALTER TABLE organizations ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
