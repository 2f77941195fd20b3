-- Per tenant, country and provider (the first one tried): requests, delivery
-- and conversion rates over the hour and the day before the newest request the
-- caller can see (so a replayed history has a scorecard too).
WITH newest AS (SELECT max(requested_at) AS t FROM outcomes),
recent AS (
  SELECT o.*, o.requested_at > n.t - INTERVAL '1 hour' AS in_1h
  FROM outcomes o CROSS JOIN newest n
  WHERE o.requested_at > n.t - INTERVAL '24 hours' AND o.first_provider IS NOT NULL
)
SELECT
  tenant_id, country, first_provider AS provider,
  sum(CASE WHEN in_1h THEN 1 ELSE 0 END) AS requests_1h,
  CASE WHEN sum(CASE WHEN in_1h THEN delivered + undelivered ELSE 0 END) = 0 THEN NULL
       ELSE CAST(sum(CASE WHEN in_1h THEN delivered ELSE 0 END) AS DOUBLE)
            / sum(CASE WHEN in_1h THEN delivered + undelivered ELSE 0 END) END AS delivery_rate_1h,
  CASE WHEN sum(CASE WHEN in_1h THEN 1 ELSE 0 END) = 0 THEN NULL
       ELSE CAST(sum(CASE WHEN in_1h AND outcome = 'approved' THEN 1 ELSE 0 END) AS DOUBLE)
            / sum(CASE WHEN in_1h THEN 1 ELSE 0 END) END AS conversion_rate_1h,
  count(*) AS requests_24h,
  CASE WHEN sum(delivered + undelivered) = 0 THEN NULL
       ELSE CAST(sum(delivered) AS DOUBLE) / sum(delivered + undelivered) END AS delivery_rate_24h,
  CAST(sum(CASE WHEN outcome = 'approved' THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS conversion_rate_24h
FROM recent
GROUP BY tenant_id, country, first_provider
