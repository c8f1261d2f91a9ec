-- A rollout's strategy is one of the kinds `StrategyKind` (mobius-core) names. SQLite
-- cannot add a CHECK constraint to an existing table, so triggers refuse any other name,
-- as 0007 does for the states. No data changes.
CREATE TRIGGER rollouts_strategy_known_insert BEFORE INSERT ON rollouts
  WHEN NEW.strategy NOT IN ('recreate', 'rolling', 'blue-green', 'canary')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: rollouts_strategy_known'); END;
CREATE TRIGGER rollouts_strategy_known_update BEFORE UPDATE OF strategy ON rollouts
  WHEN NEW.strategy NOT IN ('recreate', 'rolling', 'blue-green', 'canary')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: rollouts_strategy_known'); END;
