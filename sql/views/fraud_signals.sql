-- One row per request the fraud model flagged (decision review or block), with
-- the signals behind it and the values of the prefix, IP and device features.
SELECT
  tenant_id, verification_id, event_id, requested_at, country, variant,
  fraud_score, fraud_decision, fraud_reasons, review_threshold, block_threshold,
  fraud_model, prefix_requests_10m, prefix_distinct_numbers_1h, prefix_new_number_share_1h,
  prefix_sequential_score, prefix_requests_zscore, ip_requests_1h, ip_distinct_numbers_1h,
  device_requests_1h, device_distinct_numbers_1h, tenant_country_conversion_drop,
  tenant_country_first_time
FROM scored_requests
WHERE fraud_decision <> 'allow'
