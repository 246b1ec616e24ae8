-- 034 on PostgreSQL: the tables the hourly accrual updates row by row keep
-- half of each page free. An accrual batch updates every contract of a
-- page (and its wallet, and its day's statement row) in one transaction;
-- PostgreSQL writes each new version beside the old one (a HOT update, no
-- new index entry) only when the page has room for it, and the versions
-- of the last hour are what the page's pruning frees for this one. With
-- full pages every update went to another page and added an entry to
-- each of the table's indexes (six on contracts, three on accounts): the
-- most expensive part of the accrual (docs/decisions.md, "PostgreSQL
-- accrual, fifth round"). Rows already stored move to half-full pages the
-- first time they are updated; a migration that rebuilds one of these
-- tables must set it again.
ALTER TABLE contracts SET (fillfactor = 50);
ALTER TABLE accounts SET (fillfactor = 50);
ALTER TABLE contract_days SET (fillfactor = 50);
