-- A drain is what an operator asked for, kept apart from whether the node answers: a drained
-- node that goes down and comes back (its agent restarted, its host rebooted) is still
-- drained, until someone undrains it. `status` stays the status the scheduler reads:
-- down when the node is silent, else draining when drained, else ready.
ALTER TABLE nodes ADD COLUMN drain INTEGER NOT NULL DEFAULT 0;
UPDATE nodes SET drain = 1 WHERE status = 'draining';
