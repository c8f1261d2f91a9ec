-- A rollout's strategy is one of the kinds `StrategyKind` (mobius-core) names: a check
-- constraint refuses any other, so a strategy read back always parses. No data changes.
ALTER TABLE rollouts ADD CONSTRAINT rollouts_strategy_known CHECK (strategy IN ('recreate', 'rolling', 'blue-green', 'canary'));
