//! What the lake stores: one row type per table, its Arrow schema derived from
//! that type (so the writer and the schema the reader declares cannot drift),
//! and the analysts' views over the tables (`sql/views/*.sql`).
//!
//! Columns are flat and of types every client prints (text, integers, floats,
//! timestamps in UTC): lists are comma-joined text, so CSV exports and the
//! PostgreSQL wire protocol need no array support. Times are stored as
//! milliseconds and typed `timestamp(ms, UTC)`.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};
use veriflow_connectors::records::AlertRecord;
use veriflow_pipelines::features::Features;
use veriflow_pipelines::outcome::OutcomeRecord;
use veriflow_pipelines::time::{EventTime, parse_rfc3339};

use super::error::LakeError;

/// One stored table of the lake: its name (a directory under the root) and the
/// schema its files are written with.
#[derive(Debug, Clone)]
pub struct LakeTable {
    pub name: String,
    pub schema: SchemaRef,
}

/// A row of a lake table.
pub trait LakeRow: Serialize + Sized {
    /// The table's name (its directory).
    const TABLE: &'static str;
    /// The tenant whose partition holds the row.
    fn tenant(&self) -> &str;
    /// The time whose UTC day is the row's `day` partition.
    fn at(&self) -> EventTime;
    /// The schema files are written with.
    fn schema() -> SchemaRef;
    /// Rows as one batch of [`LakeRow::schema`].
    fn to_batch(rows: &[&Self]) -> Result<RecordBatch, LakeError> {
        let schema = Self::schema();
        let columns = arrays(schema.fields(), rows)?;
        batch(schema, columns)
    }

    fn table() -> LakeTable {
        LakeTable {
            name: Self::TABLE.to_owned(),
            schema: Self::schema(),
        }
    }
}

/// Every stored table.
pub fn lake_tables() -> Vec<LakeTable> {
    vec![OutcomeRow::table(), ScoredRow::table(), AlertRow::table()]
}

/// The analysts' views (name, query), planned over [`lake_tables`] in each
/// session. Compiled in: views are part of the contract, not configuration.
pub fn lake_views() -> Vec<(String, String)> {
    [
        (
            "verifications",
            include_str!("../../../sql/views/verifications.sql"),
        ),
        (
            "kpi_minute",
            include_str!("../../../sql/views/kpi_minute.sql"),
        ),
        (
            "route_scorecard",
            include_str!("../../../sql/views/route_scorecard.sql"),
        ),
        (
            "fraud_signals",
            include_str!("../../../sql/views/fraud_signals.sql"),
        ),
    ]
    .into_iter()
    .map(|(name, sql)| (name.to_owned(), sql.to_owned()))
    .collect()
}

/// `outcomes`: one row per decided verification (`verifications.outcomes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRow {
    pub tenant_id: String,
    pub verification_id: String,
    /// `approved` or `expired`.
    pub outcome: String,
    pub requested_at: EventTime,
    pub decided_at: EventTime,
    pub time_to_approve_ms: Option<i64>,
    pub country: String,
    pub channel: String,
    pub service: String,
    /// Providers tried, in order, comma-joined.
    pub providers: String,
    pub first_provider: Option<String>,
    pub last_provider: Option<String>,
    pub attempts: u32,
    pub failed_attempts: u32,
    pub delivered: u32,
    pub undelivered: u32,
    pub check_failed: u32,
    pub cost: Option<f64>,
    pub currency: Option<String>,
    /// The scores given at request time; null when no models were deployed.
    pub variant: Option<String>,
    pub fraud_score: Option<f32>,
    pub fraud_decision: Option<String>,
}

impl OutcomeRow {
    /// The row of an outcome record; `None` when its times do not parse (the
    /// pipeline writes them, so that is not its output).
    pub fn of(r: &OutcomeRecord) -> Option<OutcomeRow> {
        let scores = r.scores.as_deref();
        Some(OutcomeRow {
            tenant_id: r.tenant_id.to_string(),
            verification_id: r.verification_id.to_string(),
            outcome: r.outcome.as_str().to_owned(),
            requested_at: parse_rfc3339(&r.requested_at)?,
            decided_at: parse_rfc3339(&r.decided_at)?,
            time_to_approve_ms: r.time_to_approve_ms,
            country: r.country.to_string(),
            channel: r.channel.as_str().to_owned(),
            service: r.service.to_string(),
            providers: r
                .providers
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(","),
            first_provider: r.providers.first().map(|p| p.to_string()),
            last_provider: r.providers.last().map(|p| p.to_string()),
            attempts: r.attempts,
            failed_attempts: r.failed_attempts,
            delivered: r.delivered,
            undelivered: r.undelivered,
            check_failed: r.check_failed,
            cost: r.cost,
            currency: r.currency.as_deref().map(str::to_owned),
            variant: scores.map(|s| s.variant.to_string()),
            fraud_score: scores.map(|s| s.fraud_score),
            fraud_decision: scores.map(|s| s.fraud_decision.as_str().to_owned()),
        })
    }
}

impl LakeRow for OutcomeRow {
    const TABLE: &'static str = "outcomes";
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
    fn at(&self) -> EventTime {
        self.requested_at
    }
    fn schema() -> SchemaRef {
        static FIELDS: LazyLock<Vec<FieldRef>> =
            LazyLock::new(|| fields_of::<OutcomeRow>(&["requested_at", "decided_at"]));
        Arc::new(Schema::new(FIELDS.clone()))
    }
}

/// `scored_requests`: one row per scored request (`verifications.scored`), the
/// verdict flattened and every feature value a column of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRow {
    pub scored_id: String,
    pub tenant_id: String,
    pub verification_id: String,
    pub event_id: String,
    pub requested_at: EventTime,
    pub country: String,
    pub variant: String,
    pub fraud_score: f32,
    pub fraud_decision: String,
    /// The signals that pushed the score up most, strongest first, comma-joined.
    pub fraud_reasons: String,
    pub review_threshold: f64,
    pub block_threshold: f64,
    /// Ranked candidates as `provider:p_success`, best first, comma-joined.
    pub routes: String,
    pub top_provider: Option<String>,
    pub top_p_success: Option<f32>,
    /// The provider the verdict sends through (may differ from the top one).
    pub chosen_provider: Option<String>,
    /// `name@version` of each model used.
    pub fraud_model: String,
    pub success_model: String,
    /// The feature values used (each a column named as in the features topic).
    #[serde(skip)]
    pub features: Features,
}

impl LakeRow for ScoredRow {
    const TABLE: &'static str = "scored_requests";
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
    fn at(&self) -> EventTime {
        self.requested_at
    }
    fn schema() -> SchemaRef {
        static FIELDS: LazyLock<Vec<FieldRef>> = LazyLock::new(|| {
            let mut fields = fields_of::<ScoredRow>(&["requested_at"]);
            fields.extend(fields_of::<Features>(&[]));
            fields
        });
        Arc::new(Schema::new(FIELDS.clone()))
    }
    fn to_batch(rows: &[&Self]) -> Result<RecordBatch, LakeError> {
        let schema = Self::schema();
        let identity = schema.fields().len() - feature_count();
        let mut columns = arrays(&schema.fields()[..identity], rows)?;
        let features: Vec<&Features> = rows.iter().map(|r| &r.features).collect();
        columns.extend(arrays(&schema.fields()[identity..], &features)?);
        batch(schema, columns)
    }
}

fn feature_count() -> usize {
    static COUNT: LazyLock<usize> = LazyLock::new(|| fields_of::<Features>(&[]).len());
    *COUNT
}

/// `alerts`: one row per alert (`veriflow.alerts`); rules across tenants are
/// kept under tenant `*` (the operator's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub tenant_id: String,
    /// `kpi.alert` or `route.degraded`.
    pub alert_type: String,
    pub raised_at: EventTime,
    pub rule: String,
    pub severity: String,
    pub metric: String,
    pub country: String,
    pub provider: String,
    pub value: f64,
    pub threshold: f64,
    pub baseline: Option<f64>,
    pub volume: u32,
    pub window_start: EventTime,
    pub message: String,
}

impl AlertRow {
    pub fn of(r: &AlertRecord) -> Option<AlertRow> {
        let d = &r.data;
        Some(AlertRow {
            alert_id: d.alert_id.to_string(),
            tenant_id: d.tenant.to_string(),
            alert_type: r.event_type.to_string(),
            raised_at: parse_rfc3339(&r.timestamp)?,
            rule: d.rule.to_string(),
            severity: d.severity.to_string(),
            metric: d.metric.to_string(),
            country: d.country.to_string(),
            provider: d.provider.to_string(),
            value: d.value,
            threshold: d.threshold,
            baseline: d.baseline,
            volume: d.volume,
            window_start: parse_rfc3339(&d.window_start)?,
            message: d.message.to_string(),
        })
    }
}

impl LakeRow for AlertRow {
    const TABLE: &'static str = "alerts";
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
    fn at(&self) -> EventTime {
        self.raised_at
    }
    fn schema() -> SchemaRef {
        static FIELDS: LazyLock<Vec<FieldRef>> =
            LazyLock::new(|| fields_of::<AlertRow>(&["raised_at", "window_start"]));
        Arc::new(Schema::new(FIELDS.clone()))
    }
}

/// The Arrow fields of `T`'s serde form (`#[serde(skip)]` fields left out),
/// with `times` typed as UTC millisecond timestamps. Derived from our own
/// types, so failing is a bug caught by the first test that writes a row.
fn fields_of<T: for<'de> Deserialize<'de>>(times: &[&str]) -> Vec<FieldRef> {
    let traced = Vec::<FieldRef>::from_type::<T>(
        TracingOptions::default()
            .strings_as_large_utf8(false)
            .allow_null_fields(true),
    )
    .unwrap_or_else(|e| panic!("a lake row type has no Arrow form: {e}"));
    traced
        .into_iter()
        .map(|f| {
            if times.contains(&f.name().as_str()) {
                Arc::new(Field::new(
                    f.name(),
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    f.is_nullable(),
                ))
            } else {
                f
            }
        })
        .collect()
}

/// Rows as arrays of `fields`; timestamp columns are built from the integers.
fn arrays<T: Serialize>(fields: &[FieldRef], rows: &[T]) -> Result<Vec<ArrayRef>, LakeError> {
    serde_arrow::to_arrow(fields, rows).map_err(|e| LakeError::Encode(e.to_string()))
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, LakeError> {
    RecordBatch::try_new(schema, columns).map_err(|e| LakeError::Encode(e.to_string()))
}
