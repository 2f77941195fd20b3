//! Analysts' SQL over the Parquet lake, scoped to one tenant in the plan.
//!
//! The lake's layout is `<root>/<table>/tenant=<tenant dir>/day=<YYYY-MM-DD>/*.parquet`
//! ([`tenant_dir`] names a tenant's directory). Every query gets a session of its
//! own (never one shared mutable session), holding only what the caller may read:
//!
//! - **rooted**: a tenant's table is a listing of `<table>/tenant=<its dir>/` only,
//!   so no other tenant's file is ever listed;
//! - **filtered**: the public name is a view `scan WHERE tenant_id = '<tenant>'`
//!   built as a plan (not as SQL text), and the scan itself is registered under no
//!   name, so nothing can reach it around the filter;
//! - **checked**: before execution every file of every scan in the physical plan is
//!   compared with the caller's allow-list ([`check_plan`]); a plan reading
//!   anything else fails (defence in depth: it should be impossible).
//!
//! Only queries run: DDL (`CREATE EXTERNAL TABLE`, views), DML (`INSERT`, `COPY … TO`)
//! and statements (`SET`, transactions) are refused at planning, files cannot be
//! read by path (URL tables stay off), and each query has a row, memory and time
//! limit, each a clear error with a PostgreSQL error code.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{ViewTable, file_format::parquet::ParquetFormat, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use url::Url;
use veriflow_common::config::{ConfigError, Validate, duration, ensure};

use super::error::LakeError;
use super::tables::LakeTable;
use super::{Location, tenant_dir};

/// Longest query text accepted (the parser's nesting limit bounds the depth).
pub const MAX_SQL_BYTES: usize = 256 << 10;

/// Who is asking: the operator reads every tenant, a tenant's credential its own rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Operator,
    Tenant(String),
}

/// `[sql]`: per-query limits of analysts' SQL.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlLimits {
    /// Rows a result may have; more is an error (add a LIMIT or aggregate).
    pub max_rows: usize,
    /// Memory a query's sorts, joins and aggregates may hold.
    pub max_memory_bytes: usize,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Validate for SqlLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(self.max_rows >= 1, "max_rows", "must be at least 1")?;
        ensure(
            self.max_memory_bytes >= 1 << 20,
            "max_memory_bytes",
            "must be at least 1 MiB",
        )?;
        ensure(!self.timeout.is_zero(), "timeout", "must be positive")
    }
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_rows: 100_000,
            max_memory_bytes: 512 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a query gave no result. `code` is the PostgreSQL SQLSTATE a client of the
/// wire protocol would get; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        SqlError {
            code,
            message: message.into(),
        }
    }

    /// DataFusion's error, classified by its kind (planning errors by what they
    /// say): syntax, unknown names, refused statements, resources; anything else
    /// is an internal error.
    fn from_datafusion(e: DataFusionError) -> Self {
        let root = e.find_root();
        let code = match root {
            DataFusionError::SQL(..) => "42601",
            DataFusionError::SchemaError(..) => "42703",
            DataFusionError::ResourcesExhausted(_) => "53200",
            DataFusionError::NotImplemented(_) => "42501",
            DataFusionError::Plan(m)
                if m.contains("not allowed") || m.contains("not supported") =>
            {
                "42501"
            }
            DataFusionError::Plan(m) if m.contains("table") && m.contains("not found") => "42P01",
            DataFusionError::Plan(_) => "42804",
            _ => "XX000",
        };
        SqlError::new(code, root.to_string())
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for SqlError {}

/// The lake's storage failing under a query.
impl From<LakeError> for SqlError {
    fn from(e: LakeError) -> Self {
        SqlError::new("58000", e.to_string())
    }
}

/// A query's answer: its schema (also when no row matched) and its batches.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// The SQL engine over one lake: tables, views over them, limits.
pub struct LakeSql {
    /// The lake's root as a URL with a trailing slash (`file:///…/`, `s3://bucket/prefix/`).
    root: Url,
    /// The object store for `s3://` roots (local directories use DataFusion's own).
    store: Option<Arc<dyn ObjectStore>>,
    tables: Vec<LakeTable>,
    /// `(name, query)`: views over the tables, planned in each session.
    views: Vec<(String, String)>,
    limits: SqlLimits,
}

impl LakeSql {
    /// `location`: see [`Location::parse`].
    pub fn open(
        location: &str,
        tables: Vec<LakeTable>,
        views: Vec<(String, String)>,
        limits: SqlLimits,
    ) -> Result<Self, SqlError> {
        let location =
            Location::parse(location).map_err(|e| SqlError::new("58000", e.to_string()))?;
        Ok(LakeSql {
            root: location.root,
            store: location.s3.then_some(location.store),
            tables,
            views,
            limits,
        })
    }

    /// Runs one query for `scope`: planned in a session holding only what the
    /// scope may read, checked, executed under the limits.
    pub async fn query(&self, scope: &Scope, sql: &str) -> Result<QueryResult, SqlError> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(SqlError::new(
                "54000",
                format!("the query text is longer than {MAX_SQL_BYTES} bytes"),
            ));
        }
        let limits = self.limits;
        match tokio::time::timeout(limits.timeout, self.run(scope, sql)).await {
            Ok(result) => result,
            Err(_) => Err(SqlError::new(
                "57014",
                format!(
                    "the query ran longer than its limit of {} s and was cancelled",
                    limits.timeout.as_secs_f64()
                ),
            )),
        }
    }

    async fn run(&self, scope: &Scope, sql: &str) -> Result<QueryResult, SqlError> {
        let ctx = self.session(scope).await?;
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(SqlError::from_datafusion)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let plan = df
            .create_physical_plan()
            .await
            .map_err(SqlError::from_datafusion)?;
        check_plan(&plan, &self.allowed_prefixes(scope)?)?;
        let mut stream = datafusion::physical_plan::execute_stream(plan, ctx.task_ctx())
            .map_err(SqlError::from_datafusion)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(SqlError::from_datafusion)?;
            rows += batch.num_rows();
            if rows > self.limits.max_rows {
                return Err(SqlError::new(
                    "54000",
                    format!(
                        "the result has more than {} rows; add a LIMIT or aggregate",
                        self.limits.max_rows
                    ),
                ));
            }
            batches.push(batch);
        }
        Ok(QueryResult { schema, batches })
    }

    /// A fresh session: the scope's tables and the views, nothing else.
    async fn session(&self, scope: &Scope) -> Result<SessionContext, SqlError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.max_memory_bytes, 1.0)
            .build_arc()
            .map_err(SqlError::from_datafusion)?;
        if let Some(store) = &self.store {
            runtime.register_object_store(&self.root, store.clone());
        }
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(2);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for table in &self.tables {
            let provider = self.scoped_table(scope, table)?;
            ctx.register_table(table.name.as_str(), provider)
                .map_err(SqlError::from_datafusion)?;
        }
        for (name, query) in &self.views {
            // Trusted text (compiled in), planned over the scoped tables above.
            let plan = ctx
                .state()
                .create_logical_plan(query)
                .await
                .map_err(SqlError::from_datafusion)?;
            ctx.register_table(name.as_str(), Arc::new(ViewTable::new(plan, None)))
                .map_err(SqlError::from_datafusion)?;
        }
        Ok(ctx)
    }

    /// A table as `scope` sees it: the listing rooted at its directory, and for a
    /// tenant the filter on `tenant_id` in the plan.
    fn scoped_table(
        &self,
        scope: &Scope,
        table: &LakeTable,
    ) -> Result<Arc<dyn TableProvider>, SqlError> {
        let dir = self.table_dir(scope, &table.name)?;
        let url = ListingTableUrl::parse(dir.as_str()).map_err(SqlError::from_datafusion)?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(table.schema.clone());
        let listing: Arc<dyn TableProvider> =
            Arc::new(ListingTable::try_new(config).map_err(SqlError::from_datafusion)?);
        let Scope::Tenant(tenant) = scope else {
            return Ok(listing);
        };
        let plan = LogicalPlanBuilder::scan(table.name.as_str(), provider_as_source(listing), None)
            .and_then(|b| b.filter(col("tenant_id").eq(lit(tenant.as_str()))))
            .and_then(|b| b.build())
            .map_err(SqlError::from_datafusion)?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }

    /// A scope's directory of `table`. An error, never a wider directory, if the
    /// path does not join (it cannot: table names are ours, tenant segments escaped).
    fn table_dir(&self, scope: &Scope, table: &str) -> Result<Url, SqlError> {
        let path = match scope {
            Scope::Operator => format!("{table}/"),
            Scope::Tenant(t) => format!("{table}/tenant={}/", tenant_dir(t)),
        };
        self.root
            .join(&path)
            .map_err(|e| SqlError::new("XX000", format!("lake path {path:?}: {e}")))
    }

    /// The path prefixes (inside the object store) a scope's scans may read.
    fn allowed_prefixes(&self, scope: &Scope) -> Result<Vec<String>, SqlError> {
        self.tables
            .iter()
            .map(|t| {
                let url = self.table_dir(scope, &t.name)?;
                // Object store paths carry the percent-decoded segments.
                object_store::path::Path::from_url_path(url.path())
                    .map(|p| format!("{p}/"))
                    .map_err(|e| SqlError::new("XX000", format!("lake path {url}: {e}")))
            })
            .collect()
    }
}

/// The statements analysts may send: queries only.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Fails a physical plan that scans any file outside `allowed` (path prefixes).
pub fn check_plan(plan: &Arc<dyn ExecutionPlan>, allowed: &[String]) -> Result<(), SqlError> {
    let mut outside: Option<String> = None;
    let _ = plan.apply(|node| {
        if let Some(exec) = node.downcast_ref::<DataSourceExec>() {
            if let Some(scan) = exec.data_source().downcast_ref::<FileScanConfig>() {
                for group in &scan.file_groups {
                    for file in group.iter() {
                        let path = file.object_meta.location.to_string();
                        if !allowed.iter().any(|p| path.starts_with(p.as_str())) {
                            outside = Some(path);
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                }
            } else {
                outside = Some("a scan that is not of the lake's files".into());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match outside {
        None => Ok(()),
        Some(what) => Err(SqlError::new(
            "42501",
            format!("the plan reads outside the caller's data ({what}); refused"),
        )),
    }
}
