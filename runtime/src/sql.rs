//! Analysts' SQL over the lake, for the CLI (`veriflow sql`) and the API
//! (`POST /v1/sql`, through [`veriflow_api::sql::SqlEngine`]): one
//! [`LakeSql`] over `lake.dir` with the `[sql]` limits.

use veriflow_analytics::lake::{LakeSql, ResultFormat, Scope, SqlError, lake_tables, lake_views};
use veriflow_api::sql::{SqlAnswer, SqlCaller, SqlEngine, SqlFailure, SqlFuture};

use crate::config::Config;
use crate::error::{Context, Result};

/// The lake's query engine; `None` when `lake.dir` is `"off"`.
pub fn open(config: &Config) -> Result<Option<LakeSql>> {
    let Some(dir) = &config.lake.dir else {
        return Ok(None);
    };
    let sql = LakeSql::open(dir, lake_tables(), lake_views(), config.sql).context("lake.dir")?;
    Ok(Some(sql))
}

/// Runs one query and encodes its answer (the CLI's path).
pub fn query_blocking(
    sql: &LakeSql,
    scope: &Scope,
    text: &str,
    format: ResultFormat,
) -> std::result::Result<Vec<u8>, SqlError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| SqlError::new("58000", format!("starting the query runtime: {e}")))?;
    runtime.block_on(sql.query(scope, text))?.encode(format)
}

/// The API's SQL engine.
pub struct LakeQueries(pub LakeSql);

impl SqlEngine for LakeQueries {
    fn query<'a>(
        &'a self,
        caller: SqlCaller,
        sql: &'a str,
        accept: Option<&'a str>,
    ) -> SqlFuture<'a> {
        Box::pin(async move {
            let format = ResultFormat::from_accept(accept).ok_or_else(|| SqlFailure {
                sqlstate: "0A000",
                message: format!(
                    "Accept {:?} names no format offered: application/json, text/csv, \
                     text/plain, application/vnd.apache.arrow.stream, application/vnd.apache.parquet",
                    accept.unwrap_or("")
                ),
            })?;
            let scope = match caller {
                SqlCaller::Operator => Scope::Operator,
                SqlCaller::Tenant(t) => Scope::Tenant(t),
            };
            let failure = |e: SqlError| SqlFailure {
                sqlstate: e.code,
                message: e.message,
            };
            let result = self.0.query(&scope, sql).await.map_err(failure)?;
            let body = result.encode(format).map_err(failure)?;
            Ok(SqlAnswer {
                content_type: format.media_type(),
                body,
            })
        })
    }
}
