"""The prediction cache: keys, the in-process and Redis tiers, and what guards Redis.

`tiers` (the tiered cache and its LRU), `keys` (canonical rows, md5 keys), `single_flight`,
`redis_tier` (the Redis tier: coalesced exchanges, signed values), `redis_backends`
(standalone, Cluster, Sentinel), `resp_connection`, `redis_deadline`, `breaker`,
`redis_policy` (whether Redis pays for this model), `signing`, `sentinel_url`, `urls`.
"""
