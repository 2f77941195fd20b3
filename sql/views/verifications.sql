-- One row per decided verification: its outcome, the scores it was given and
-- the feature values its request was scored with (null when it was not scored).
SELECT
  o.tenant_id, o.verification_id, o.outcome, o.requested_at, o.decided_at,
  o.time_to_approve_ms, o.country, o.channel, o.service, o.providers,
  o.first_provider, o.last_provider, o.attempts, o.failed_attempts, o.delivered,
  o.undelivered, o.check_failed, o.cost, o.currency, o.variant, o.fraud_score,
  o.fraud_decision, s.fraud_reasons, s.top_provider, s.top_p_success, s.chosen_provider,
  s.phone_attempts_10m, s.phone_attempts_24h, s.phone_lifetime_approvals, s.phone_first_seen,
  s.prefix_requests_1m, s.prefix_requests_10m, s.prefix_requests_1h,
  s.prefix_distinct_numbers_1h, s.prefix_new_number_share_1h, s.prefix_sequential_score,
  s.prefix_requests_zscore, s.ip_requests_1m, s.ip_requests_1h, s.ip_distinct_numbers_1m,
  s.ip_distinct_numbers_1h, s.ip_distinct_countries_24h, s.ip_country_mismatch,
  s.device_requests_1m, s.device_requests_1h, s.device_distinct_numbers_1m,
  s.device_distinct_numbers_1h, s.device_distinct_countries_24h,
  s.tenant_country_conversion_1h, s.tenant_country_conversion_24h,
  s.tenant_country_conversion_drop, s.tenant_country_first_time, s.local_hour
FROM outcomes o
LEFT JOIN scored_requests s
  ON s.tenant_id = o.tenant_id AND s.verification_id = o.verification_id
