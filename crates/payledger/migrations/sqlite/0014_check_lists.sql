-- SQLite builds a temporary B-tree for a CHECK whose IN list holds more than two constants, on every row it
-- checks: each insert into these tables (and each update of such a column) opened and closed one to three of
-- them, 16 % of a million-line statement import's time. Comparisons joined by OR say the same (a NULL passes
-- both forms) and cost nothing of the kind. Neither the rows nor their format change, so the constraint text
-- is replaced in place, as SQLite's documentation allows for such a change
-- (https://www.sqlite.org/lang_altertable.html#otheralter), instead of rebuilding every table that has one.
-- RESET makes this connection parse the new text (with OFF it would keep the old tables in memory, and a
-- later migration's ALTER TABLE ... ADD COLUMN on it would edit the new text at the old offsets); the table
-- created at the end bumps the schema version, so that other connections read it too. That table's CHECK
-- fails the migration, which then changes nothing, unless every constraint was replaced.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
    'kind IN (''organization'', ''user'', ''service'', ''system'')',
    'kind = ''organization'' OR kind = ''user'' OR kind = ''service'' OR kind = ''system''')
WHERE type = 'table' AND name = 'accounts';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''held'', ''captured'', ''released'')',
    'status = ''held'' OR status = ''captured'' OR status = ''released''')
WHERE type = 'table' AND name = 'holds';
UPDATE sqlite_schema SET sql = replace(sql,
    'kind IN (''deposit'', ''reservation'', ''revenue_recognition'', ''release'',
                                                  ''transfer'', ''withdrawal'', ''payout_hold'', ''payout_release'',
                                                  ''payout'', ''payout_return'')',
    'kind = ''deposit'' OR kind = ''reservation'' OR kind = ''revenue_recognition'' OR kind = ''release'' OR kind = ''transfer'' OR kind = ''withdrawal'' OR kind = ''payout_hold'' OR kind = ''payout_release'' OR kind = ''payout'' OR kind = ''payout_return''')
WHERE type = 'table' AND name = 'account_activity';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''pending'', ''processing'', ''completed'', ''failed'', ''cancelled'',
                                                       ''returned'')',
    'status = ''pending'' OR status = ''processing'' OR status = ''completed'' OR status = ''failed'' OR status = ''cancelled'' OR status = ''returned''')
WHERE type = 'table' AND name = 'payouts';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''queued'', ''done'', ''dead'')',
    'status = ''queued'' OR status = ''done'' OR status = ''dead''')
WHERE type = 'table' AND name = 'jobs';
UPDATE sqlite_schema SET sql = replace(sql,
    'role IN (''viewer'', ''operator'', ''admin'')',
    'role = ''viewer'' OR role = ''operator'' OR role = ''admin''')
WHERE type = 'table' AND name = 'users';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''received'', ''applied'', ''failed'', ''duplicate'')',
    'status = ''received'' OR status = ''applied'' OR status = ''failed'' OR status = ''duplicate''')
WHERE type = 'table' AND name = 'bank_payments';
UPDATE sqlite_schema SET sql = replace(sql,
    'format IN (''1c'', ''camt053'', ''csv'')',
    'format = ''1c'' OR format = ''camt053'' OR format = ''csv''')
WHERE type = 'table' AND name = 'statement_imports';
UPDATE sqlite_schema SET sql = replace(sql,
    'rule IN (''bank_ref'', ''document'', ''applied'', ''late_notice'')',
    'rule = ''bank_ref'' OR rule = ''document'' OR rule = ''applied'' OR rule = ''late_notice''')
WHERE type = 'table' AND name = 'statement_matches';
UPDATE sqlite_schema SET sql = replace(replace(replace(sql,
    'kind IN (''missing_notice'', ''notice_without_line'', ''amount_mismatch'',
                                               ''ambiguous'', ''unknown_payer'')',
    'kind = ''missing_notice'' OR kind = ''notice_without_line'' OR kind = ''amount_mismatch'' OR kind = ''ambiguous'' OR kind = ''unknown_payer'''),
    'state IN (''open'', ''resolved'', ''accepted'')',
    'state = ''open'' OR state = ''resolved'' OR state = ''accepted'''),
    'resolution IN (''applied'', ''notice'', ''matched'', ''accepted'')',
    'resolution = ''applied'' OR resolution = ''notice'' OR resolution = ''matched'' OR resolution = ''accepted''')
WHERE type = 'table' AND name = 'statement_discrepancies';
UPDATE sqlite_schema SET sql = replace(sql,
    'nature IN (''payment'', ''reversal'', ''own_transfer'', ''bank_order'')',
    'nature = ''payment'' OR nature = ''reversal'' OR nature = ''own_transfer'' OR nature = ''bank_order''')
WHERE type = 'table' AND name = 'statement_lines';
PRAGMA writable_schema = RESET;
CREATE TABLE check_lists_replaced (
    replaced INTEGER NOT NULL CONSTRAINT every_listed_check_is_comparisons CHECK (replaced = 13)
);
INSERT INTO check_lists_replaced SELECT
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'accounts'
        AND instr(sql, 'kind = ''organization'' OR kind = ''user'' OR kind = ''service'' OR kind = ''system''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'holds'
        AND instr(sql, 'status = ''held'' OR status = ''captured'' OR status = ''released''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'account_activity'
        AND instr(sql, 'kind = ''deposit'' OR kind = ''reservation'' OR kind = ''revenue_recognition'' OR kind = ''release'' OR kind = ''transfer'' OR kind = ''withdrawal'' OR kind = ''payout_hold'' OR kind = ''payout_release'' OR kind = ''payout'' OR kind = ''payout_return''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'payouts'
        AND instr(sql, 'status = ''pending'' OR status = ''processing'' OR status = ''completed'' OR status = ''failed'' OR status = ''cancelled'' OR status = ''returned''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'jobs'
        AND instr(sql, 'status = ''queued'' OR status = ''done'' OR status = ''dead''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'users'
        AND instr(sql, 'role = ''viewer'' OR role = ''operator'' OR role = ''admin''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'bank_payments'
        AND instr(sql, 'status = ''received'' OR status = ''applied'' OR status = ''failed'' OR status = ''duplicate''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_imports'
        AND instr(sql, 'format = ''1c'' OR format = ''camt053'' OR format = ''csv''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_matches'
        AND instr(sql, 'rule = ''bank_ref'' OR rule = ''document'' OR rule = ''applied'' OR rule = ''late_notice''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_discrepancies'
        AND instr(sql, 'kind = ''missing_notice'' OR kind = ''notice_without_line'' OR kind = ''amount_mismatch'' OR kind = ''ambiguous'' OR kind = ''unknown_payer''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_discrepancies'
        AND instr(sql, 'state = ''open'' OR state = ''resolved'' OR state = ''accepted''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_discrepancies'
        AND instr(sql, 'resolution = ''applied'' OR resolution = ''notice'' OR resolution = ''matched'' OR resolution = ''accepted''') > 0) +
    (SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'statement_lines'
        AND instr(sql, 'nature = ''payment'' OR nature = ''reversal'' OR nature = ''own_transfer'' OR nature = ''bank_order''') > 0);
DROP TABLE check_lists_replaced;
