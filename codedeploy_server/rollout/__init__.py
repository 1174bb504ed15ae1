"""The rollout engine: deployments driven through their instances with CodeDeploy's rules.

`engine.RolloutEngine` (the API's `RolloutControl`) orchestrates; `policy` holds the pure
scheduling and success rules, `events` maps job execution updates to lifecycle events,
`transitions` changes a deployment inside one transaction, `rollback` writes automatic
rollbacks, `health` keeps instance health (and the API's scheduling order), `deadlines` the
agent pickup deadline, `document` the signed job document, `records` the rows.

Nothing is imported here: the API imports `policy` and `health` while `engine` imports the
API's errors, so the package itself stays empty to keep that free of import cycles.
"""
