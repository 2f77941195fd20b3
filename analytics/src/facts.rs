//! The `verifications` table: one row per verification of a KPI window.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use veriflow_pipelines::OutcomeKind;
use veriflow_pipelines::kpi::KpiWindowBatch;
use veriflow_pipelines::scoring::FraudDecision;

/// The `variant` of a verification no model scored.
pub const NOT_SCORED: &str = "none";

/// The table name KPI SQL reads.
pub const TABLE: &str = "verifications";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("window_start", ts(), false),
        Field::new("window_end", ts(), false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        // First attempt's provider; "none" when nothing was sent.
        Field::new("provider", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("requested_at", ts(), false),
        Field::new("sent", DataType::Int64, false),
        Field::new("delivered", DataType::Int64, false),
        Field::new("undelivered", DataType::Int64, false),
        // 1/0; both 0 while undecided.
        Field::new("approved", DataType::Int64, false),
        Field::new("expired", DataType::Int64, false),
        Field::new("time_to_approve_ms", DataType::Int64, true),
        Field::new("cost", DataType::Float64, true),
        // From the models when they score (`[scoring] models`); null / 0 / "none"
        // otherwise.
        Field::new("fraud_score", DataType::Float64, true),
        Field::new("fraud_blocked", DataType::Int64, false),
        // The A/B arm that decided: champion or challenger.
        Field::new("variant", DataType::Utf8, false),
    ]))
});

pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

pub fn to_record_batch(batch: &KpiWindowBatch) -> Result<RecordBatch, ArrowError> {
    let n = batch.facts.len();
    let tsb = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut start, mut end, mut requested) = (tsb(), tsb(), tsb());
    let text = || StringBuilder::with_capacity(n, n * 8);
    let (mut tenant, mut country, mut provider, mut channel) = (text(), text(), text(), text());
    let mut variant = text();
    let int = || Int64Builder::with_capacity(n);
    let (mut sent, mut delivered, mut undelivered) = (int(), int(), int());
    let (mut approved, mut expired, mut tta, mut blocked) = (int(), int(), int(), int());
    let (mut cost, mut score) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    for f in &batch.facts {
        start.append_value(batch.window_start);
        end.append_value(batch.window_end);
        tenant.append_value(&f.tenant);
        country.append_value(&f.country);
        provider.append_value(&f.provider);
        channel.append_value(f.channel.as_str());
        requested.append_value(f.requested_at);
        sent.append_value(f.sent.into());
        delivered.append_value(f.delivered.into());
        undelivered.append_value(f.undelivered.into());
        approved.append_value((f.outcome == Some(OutcomeKind::Approved)).into());
        expired.append_value((f.outcome == Some(OutcomeKind::Expired)).into());
        tta.append_option(f.time_to_approve_ms);
        cost.append_option(f.cost);
        match &f.scored {
            Some(s) => {
                score.append_value(f64::from(s.fraud_score));
                blocked.append_value((s.fraud_decision == FraudDecision::Block).into());
                variant.append_value(&s.variant);
            }
            None => {
                score.append_null();
                blocked.append_value(0);
                variant.append_value(NOT_SCORED);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(tenant.finish()),
        Arc::new(country.finish()),
        Arc::new(provider.finish()),
        Arc::new(channel.finish()),
        Arc::new(requested.finish()),
        Arc::new(sent.finish()),
        Arc::new(delivered.finish()),
        Arc::new(undelivered.finish()),
        Arc::new(approved.finish()),
        Arc::new(expired.finish()),
        Arc::new(tta.finish()),
        Arc::new(cost.finish()),
        Arc::new(score.finish()),
        Arc::new(blocked.finish()),
        Arc::new(variant.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}
