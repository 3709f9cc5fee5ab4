-- 0001: placeholder replaced by the ledger schema (see internal/store).
SELECT 1;
