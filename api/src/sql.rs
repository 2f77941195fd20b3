//! Analysts' SQL over the history lake: `POST /v1/sql` (handler in
//! `routes/sql.rs`).
//!
//! The lake and its query engine belong to the process that keeps the lake
//! (`veriflow run` or `veriflow api` with `lake.dir` set), which attaches a
//! [`SqlEngine`]; the API only decides who is asking. Tenant scoping is the
//! engine's: it plans each query over the caller's tables only.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// Whose rows a query may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlCaller {
    Operator,
    Tenant(String),
}

/// An encoded answer.
#[derive(Debug)]
pub struct SqlAnswer {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Why a query gave no answer: the PostgreSQL error code and what to change.
#[derive(Debug, Clone)]
pub struct SqlFailure {
    pub sqlstate: &'static str,
    pub message: String,
}

pub type SqlFuture<'a> = Pin<Box<dyn Future<Output = Result<SqlAnswer, SqlFailure>> + Send + 'a>>;

/// Runs analysts' queries; the process keeping the lake provides it.
pub trait SqlEngine: Send + Sync + 'static {
    /// `accept`: the request's `Accept` header (`None`: JSON). An `Accept`
    /// naming no format the engine has is a failure with SQLSTATE `0A000`.
    fn query<'a>(
        &'a self,
        caller: SqlCaller,
        sql: &'a str,
        accept: Option<&'a str>,
    ) -> SqlFuture<'a>;
}

/// The engine, once the process attaches one.
pub type SqlSlot = Arc<OnceLock<Arc<dyn SqlEngine>>>;
