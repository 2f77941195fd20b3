-- Per minute of request time, tenant, country, first provider and channel: the
-- KPI fields of contract §2 over decided verifications.
SELECT
  date_trunc('minute', requested_at) AS minute,
  tenant_id, country, first_provider AS provider, channel,
  count(*) AS requests,
  sum(attempts) AS sent,
  sum(delivered) AS delivered,
  sum(undelivered) AS undelivered,
  sum(CASE WHEN outcome = 'approved' THEN 1 ELSE 0 END) AS approved,
  sum(CASE WHEN outcome = 'expired' THEN 1 ELSE 0 END) AS expired,
  CAST(sum(CASE WHEN outcome = 'approved' THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS conversion_rate,
  CASE WHEN sum(delivered) + sum(undelivered) = 0 THEN NULL
       ELSE CAST(sum(delivered) AS DOUBLE) / (sum(delivered) + sum(undelivered)) END AS delivery_rate,
  sum(CASE WHEN fraud_decision = 'block' THEN 1 ELSE 0 END) AS fraud_blocked,
  avg(fraud_score) AS fraud_score_avg,
  approx_percentile_cont(time_to_approve_ms, 0.5) AS time_to_approve_p50_ms,
  approx_percentile_cont(time_to_approve_ms, 0.95) AS time_to_approve_p95_ms,
  sum(cost) AS cost
FROM outcomes
GROUP BY 1, 2, 3, 4, 5
