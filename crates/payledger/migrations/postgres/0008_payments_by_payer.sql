-- The console's payment inbox filters by INN, newest first; without this it would scan every payment.
CREATE INDEX bank_payments_by_payer ON bank_payments (payer_inn, id);
