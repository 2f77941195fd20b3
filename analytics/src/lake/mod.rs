//! The history lake: Parquet files of the pipeline's outputs, and analysts' SQL
//! over them.
//!
//! - [`tables`]: what is stored: each table's row type and Arrow schema (one
//!   type, written and read through it), and the analysts' views over them;
//! - [`writer`]: how files land: one immutable file per batch, tenant and day,
//!   named by the source partition and first offset, then the partition's
//!   position, so a torn batch is recognised and replaced;
//! - [`sql`]: queries, each in a session holding only the caller's tables.
//!
//! Layout under the root (a directory or `s3://bucket/prefix`):
//! `<table>/tenant=<tenant_dir(id)>/day=<YYYY-MM-DD>/p<partition>-<first offset>.parquet`
//! and `_positions/<table>/p<partition>.json`.

pub mod error;
pub mod export;
pub mod sql;
pub mod tables;
pub mod writer;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;
use veriflow_connectors::s3::S3Location;

pub use error::LakeError;
pub use export::ResultFormat;
pub use sql::{LakeSql, QueryResult, Scope, SqlError, SqlLimits, check_plan};
pub use tables::{LakeTable, lake_tables, lake_views};
pub use writer::LakeWriter;

/// Where a lake is: its root URL (with a trailing slash), the object store that
/// holds it, and the root's path inside that store.
#[derive(Clone)]
pub(crate) struct Location {
    pub root: Url,
    pub store: Arc<dyn ObjectStore>,
    pub base: Path,
    /// An `s3://` location (a local directory is read through DataFusion's own
    /// file store).
    pub s3: bool,
}

impl Location {
    /// A directory (created if missing) or `s3://bucket/prefix` (credentials and
    /// endpoint from the usual `AWS_*` variables).
    pub fn parse(location: &str) -> Result<Location, LakeError> {
        let bad = |why: String| LakeError::Location {
            location: location.to_owned(),
            why,
        };
        if location.starts_with("s3://") {
            let s3 = S3Location::parse(location).map_err(bad)?;
            let root = match s3.prefix.as_str() {
                "" => format!("s3://{}/", s3.bucket),
                prefix => format!("s3://{}/{prefix}/", s3.bucket),
            };
            let root = Url::parse(&root).map_err(|e| bad(e.to_string()))?;
            return Ok(Location {
                root,
                store: s3.store,
                base: Path::from(s3.prefix.as_str()),
                s3: true,
            });
        }
        std::fs::create_dir_all(location).map_err(|e| bad(e.to_string()))?;
        let dir = std::fs::canonicalize(location).map_err(|e| bad(e.to_string()))?;
        let root =
            Url::from_directory_path(&dir).map_err(|_| bad("not an absolute path".into()))?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
        Ok(Location {
            root,
            store: Arc::new(store),
            base: Path::default(),
            s3: false,
        })
    }

    /// `relative` (slash-separated segments, already safe: our table names,
    /// escaped tenant directories, days, file names) under the root, as a store
    /// path taken literally. Not `Path::from`, which would percent-encode the
    /// `~` of tenant directories and so name another directory than readers
    /// (DataFusion's listing, DuckDB, pyarrow) look in.
    pub fn path(&self, relative: &str) -> Result<Path, LakeError> {
        let joined = match self.base.as_ref() {
            "" => relative.to_owned(),
            base => format!("{base}/{relative}"),
        };
        Path::parse(&joined).map_err(|e| LakeError::Location {
            location: self.root.to_string(),
            why: format!("path {joined:?}: {e}"),
        })
    }
}

/// A tenant's directory name: every byte outside `[A-Za-z0-9_-]` as `~XX`, so the
/// name is one path segment, never `.` or `..`, and distinct tenants never share it.
/// Not `%XX`: URLs and object store paths decode percent escapes (`%2E%2E` is `..`
/// to a URL parser), while `~` is unreserved everywhere and means itself.
pub fn tenant_dir(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}
