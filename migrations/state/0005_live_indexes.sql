-- Indexes for the queries the leader's scheduler and the route table run on every refresh:
-- instances wanted running (by app), and releases still rolling out (by deadline).
CREATE INDEX instances_live ON instances (app, id) WHERE desired = 'run';
CREATE INDEX releases_rolling ON releases (deadline_at) WHERE status = 'rolling';
