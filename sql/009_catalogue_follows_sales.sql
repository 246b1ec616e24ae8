-- 009: the public catalogue shows what is still for sale (sold_out,
-- available_ths), which depends on orders and contracts as well as on
-- packages and capacity: bump the catalogue generation when they change,
-- so every child re-renders within its revalidation interval.
-- (A contract that simply passes its expiry fires no trigger; the cron
-- issue's expiry job marks it ended, which does.)

CREATE TRIGGER contracts_ai_catalogue AFTER INSERT ON contracts BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER contracts_au_catalogue AFTER UPDATE OF status ON contracts BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER orders_ai_catalogue AFTER INSERT ON orders BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER orders_au_catalogue AFTER UPDATE OF status ON orders BEGIN
    UPDATE catalogue_state SET generation = generation + 1 WHERE id = 1;
END;
