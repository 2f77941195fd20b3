-- veriflow_kpi (contract §2): one point per window and tenant × country ×
-- provider × channel. The file name is the measurement; text columns become tags,
-- numeric columns fields, `time` the timestamp (the window start).
--
-- Runs over `verifications`: one row per verification requested in the window
-- (see README, KPIs, for every column). A window is emitted when it closes and
-- again while its verifications are decided; until then `approved` and `expired`
-- count only what is decided, so rates rise to their final values.
SELECT
    window_start AS time,
    tenant,
    country,
    provider,
    channel,
    count(*) AS requests,
    sum(sent) AS sent,
    sum(delivered) AS delivered,
    sum(undelivered) AS undelivered,
    sum(approved) AS approved,
    sum(expired) AS expired,
    CAST(sum(approved) AS DOUBLE) / count(*) AS conversion_rate,
    CASE
        WHEN sum(delivered) + sum(undelivered) > 0
        THEN CAST(sum(delivered) AS DOUBLE) / (sum(delivered) + sum(undelivered))
    END AS delivery_rate,
    sum(fraud_blocked) AS fraud_blocked,
    avg(fraud_score) AS fraud_score_avg,
    approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_approve_ms) AS time_to_approve_p50_ms,
    approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY time_to_approve_ms) AS time_to_approve_p95_ms,
    sum(cost) AS cost
FROM verifications
GROUP BY window_start, tenant, country, provider, channel
