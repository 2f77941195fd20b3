//! KPI SQL: DataFusion runs each `.sql` file over an Arrow batch of one KPI
//! window's facts ([`veriflow_pipelines::kpi`]) and the result rows become
//! InfluxDB points.
//!
//! Planning is separated from execution: every file is planned at start against
//! the facts' schema, so a bad file is refused before any data flows, with its path,
//! line and DataFusion's message. DDL, DML and other statements are refused: a KPI
//! file is one query. SQL text is never assembled from input; the window's data
//! reaches the query only as the `verifications` table.
//!
//! Output convention: the file name (without `.sql`) is the measurement; a `time`
//! column (timestamp or Unix ms) is the point's timestamp; text columns are tags;
//! integer, float and boolean columns are fields; nulls are left out.

mod facts;
pub mod lake;
mod points;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::datasource::MemTable;
use datafusion::prelude::{SQLOptions, SessionContext};
use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, duration_or_off, empty_as_none, ensure};
use veriflow_connectors::influx::Point;
use veriflow_pipelines::kpi::KpiWindowBatch;

pub use facts::{TABLE, schema, to_record_batch};

/// `[kpi]`: the KPI windows and their queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KpiConfig {
    /// Width of the KPI windows; `"off"` computes no KPIs (nor does an empty
    /// `influx.url`).
    #[serde(with = "duration_or_off")]
    pub window: Option<Duration>,
    /// Directory of KPI `.sql` files; empty uses the built-in `sql/kpi/`.
    #[serde(with = "empty_as_none")]
    pub sql_dir: Option<PathBuf>,
    /// Emit each window when it closes and as its verifications are decided
    /// (true: for InfluxDB, which overwrites a series' point at the same
    /// time), or once, when final (false, the default: a store that keeps
    /// every sample, such as VictoriaMetrics, would count each emission).
    pub provisional: bool,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            window: Some(Duration::from_secs(60)),
            sql_dir: None,
            provisional: false,
        }
    }
}

impl Validate for KpiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(
            self.window.is_none_or(|w| w >= Duration::from_secs(1)),
            "window",
            "must be at least 1s (or \"off\")",
        )?;
        if let Some(dir) = &self.sql_dir {
            ensure(
                dir.is_dir(),
                "sql_dir",
                format!("{} is not a directory", dir.display()),
            )?;
        }
        Ok(())
    }
}

/// The KPI files built into the binary (the repository's `sql/kpi/`).
const BUILTIN: [(&str, &str); 2] = [
    (
        "veriflow_kpi",
        include_str!("../../sql/kpi/veriflow_kpi.sql"),
    ),
    (
        "veriflow_kpi_variant",
        include_str!("../../sql/kpi/veriflow_kpi_variant.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{path}: {message}")]
    Sql { path: String, message: String },
    #[error("cannot read KPI SQL from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no KPI .sql files in {0}")]
    Empty(String),
    #[error("running {path}: {message}")]
    Run { path: String, message: String },
    #[error("starting the query runtime: {0}")]
    Runtime(std::io::Error),
}

/// One KPI file.
#[derive(Debug, Clone)]
pub struct KpiQuery {
    /// The measurement: the file name without `.sql`.
    pub measurement: String,
    pub path: String,
    pub sql: String,
    /// `Some((size, every))` (ms) for a hopping window, declared by a comment line
    /// `-- window: 1h every 5m`; `None` runs on every tumbling window.
    pub hop: Option<(i64, i64)>,
}

/// The `-- window: SIZE every EVERY` declaration of a KPI file, if any.
fn parse_hop(path: &str, sql: &str) -> Result<Option<(i64, i64)>, AnalyticsError> {
    for (n, line) in sql.lines().enumerate() {
        let Some(spec) = line.trim().strip_prefix("--").map(str::trim) else {
            continue;
        };
        let Some(spec) = spec.strip_prefix("window:") else {
            continue;
        };
        let bad = || AnalyticsError::Sql {
            path: format!("{path}:{}", n + 1),
            message: format!(
                "`-- window:{spec}` must read `-- window: SIZE every EVERY`, e.g. `1h every 5m`"
            ),
        };
        let (size, every) = spec.split_once(" every ").ok_or_else(bad)?;
        let ms = |t: &str| {
            veriflow_common::config::parse_duration(t)
                .map(|d| d.as_millis() as i64)
                .filter(|v| *v > 0)
        };
        let (Some(size), Some(every)) = (ms(size), ms(every)) else {
            return Err(bad());
        };
        return Ok(Some((size, every)));
    }
    Ok(None)
}

pub struct KpiEngine {
    runtime: tokio::runtime::Runtime,
    queries: Vec<KpiQuery>,
    /// Series written for a window that is not final yet, so a later emission
    /// that no longer has one can zero it: (partition, measurement, time) → tags.
    emitted: Emitted,
}

fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl KpiEngine {
    /// Loads `dir/*.sql` (sorted by name), or the built-in files when `dir` is
    /// `None`, and plans each against the facts' schema.
    pub fn load(dir: Option<&Path>) -> Result<KpiEngine, AnalyticsError> {
        let queries = match dir {
            None => BUILTIN
                .iter()
                .map(|(name, sql)| KpiQuery {
                    measurement: name.to_string(),
                    path: format!("sql/kpi/{name}.sql (built in)"),
                    sql: sql.to_string(),
                    hop: None,
                })
                .collect(),
            Some(dir) => read_dir(dir)?,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(AnalyticsError::Runtime)?;
        let engine = KpiEngine {
            runtime,
            queries,
            emitted: BTreeMap::new(),
        };
        engine.plan_all()?;
        Ok(engine)
    }

    pub fn queries(&self) -> &[KpiQuery] {
        &self.queries
    }

    /// The hopping windows the queries need, each once.
    pub fn hops(&self) -> Vec<(i64, i64)> {
        let mut hops: Vec<(i64, i64)> = self.queries.iter().filter_map(|q| q.hop).collect();
        hops.sort_unstable();
        hops.dedup();
        hops
    }

    fn plan_all(&self) -> Result<(), AnalyticsError> {
        let ctx = SessionContext::new();
        let empty = MemTable::try_new(schema(), vec![vec![]]).map_err(|e| AnalyticsError::Sql {
            path: "(facts table)".into(),
            message: e.to_string(),
        })?;
        let _ = ctx.register_table(TABLE, Arc::new(empty));
        for q in &self.queries {
            let planned = self
                .runtime
                .block_on(ctx.sql_with_options(&q.sql, options()));
            match planned {
                Err(e) => {
                    return Err(AnalyticsError::Sql {
                        path: with_line(&q.path, &e.to_string()),
                        message: e.to_string(),
                    });
                }
                Ok(df) => {
                    let fields = df.schema().fields();
                    if !fields.iter().any(|f| f.name() == "time") {
                        return Err(AnalyticsError::Sql {
                            path: q.path.clone(),
                            message: "the query must return a `time` column (the point's \
                                      timestamp, e.g. `window_start AS time`)"
                                .into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs every KPI query over one window emission; returns the points to write.
    pub fn evaluate(&mut self, batch: &KpiWindowBatch) -> Result<Vec<Point>, AnalyticsError> {
        let facts = to_record_batch(batch).map_err(|e| AnalyticsError::Run {
            path: "(facts table)".into(),
            message: e.to_string(),
        })?;
        let ctx = SessionContext::new();
        let table = MemTable::try_new(facts.schema(), vec![vec![facts]]).map_err(|e| {
            AnalyticsError::Run {
                path: "(facts table)".into(),
                message: e.to_string(),
            }
        })?;
        let _ = ctx.register_table(TABLE, Arc::new(table));
        let mut out = Vec::new();
        for q in self.queries.iter().filter(|q| q.hop == batch.hop) {
            let run = |e: datafusion::error::DataFusionError| AnalyticsError::Run {
                path: q.path.clone(),
                message: e.to_string(),
            };
            let rows = self.runtime.block_on(async {
                ctx.sql_with_options(&q.sql, options())
                    .await?
                    .collect()
                    .await
            });
            let rows = rows.map_err(run)?;
            let (mut points, int_fields) =
                points::from_batches(&q.measurement, &rows).map_err(|message| {
                    AnalyticsError::Run {
                        path: q.path.clone(),
                        message,
                    }
                })?;
            retract(
                &mut self.emitted,
                batch,
                &q.measurement,
                &int_fields,
                &mut points,
            );
            out.extend(points);
        }
        Ok(out)
    }
}

/// Series written per (partition, measurement, time) for windows not final yet.
type Emitted = BTreeMap<(i32, String, i64), BTreeSet<Vec<(String, String)>>>;

/// Zeroes series an earlier emission of this window wrote and this one no longer
/// has (a verification whose provider became known moves to another series).
fn retract(
    emitted: &mut Emitted,
    batch: &KpiWindowBatch,
    measurement: &str,
    int_fields: &[String],
    points: &mut Vec<Point>,
) {
    let mut now: BTreeMap<i64, BTreeSet<Vec<(String, String)>>> = BTreeMap::new();
    for p in points.iter() {
        now.entry(p.timestamp_ms)
            .or_default()
            .insert(sorted_tags(p));
    }
    let times: BTreeSet<i64> = now.keys().copied().chain([batch.window_start]).collect();
    for t in times {
        let key = (batch.partition, measurement.to_string(), t);
        let current = now.remove(&t).unwrap_or_default();
        if let Some(before) = emitted.get(&key) {
            for gone in before.difference(&current) {
                let mut p = Point::new(measurement, t);
                p.tags = gone.clone();
                for f in int_fields {
                    p.fields
                        .push((f.clone(), veriflow_connectors::influx::FieldValue::Int(0)));
                }
                if !p.fields.is_empty() {
                    points.push(p);
                }
            }
        }
        if batch.is_final {
            emitted.remove(&key);
        } else {
            emitted.insert(key, current);
        }
    }
}

fn sorted_tags(p: &Point) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = p
        .tags
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    tags.sort();
    tags
}

fn read_dir(dir: &Path) -> Result<Vec<KpiQuery>, AnalyticsError> {
    let read_err = |path: &Path, source| AnalyticsError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(AnalyticsError::Empty(dir.display().to_string()));
    }
    files
        .into_iter()
        .map(|path| {
            let sql = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            let measurement = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let path = path.display().to_string();
            Ok(KpiQuery {
                hop: parse_hop(&path, &sql)?,
                measurement,
                path,
                sql,
            })
        })
        .collect()
}

/// `path:LINE` when DataFusion's message names a line ("at Line: 3, Column: 9").
fn with_line(path: &str, message: &str) -> String {
    let line = message
        .split("Line: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|l| !l.is_empty());
    match line {
        Some(l) => format!("{path}:{l}"),
        None => path.to_string(),
    }
}
