"""The learning loop's service side: join logged decisions with their
rewards, train the (placement, arm) models, publish snapshots
(docs/LEARNING.md). `nba learn` runs `learner.Learner`."""
