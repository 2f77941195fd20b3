-- veriflow_kpi_variant: the A/B test of scoring models, read per window and
-- tenant × variant (`champion`, `challenger`; `none` when no model scored).
-- Conversion and failed attempts are what routing changes; fraud_blocked and
-- the average score are what the fraud model changes.
SELECT
    window_start AS time,
    tenant,
    variant,
    count(*) AS requests,
    sum(sent) AS sent,
    sum(approved) AS approved,
    sum(expired) AS expired,
    CAST(sum(approved) AS DOUBLE) / count(*) AS conversion_rate,
    sum(CASE WHEN expired = 1 THEN sent ELSE 0 END) AS failed_attempts,
    sum(fraud_blocked) AS fraud_blocked,
    avg(fraud_score) AS fraud_score_avg,
    sum(cost) AS cost
FROM verifications
GROUP BY window_start, tenant, variant
