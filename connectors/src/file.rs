//! JSON-lines files: one message per line (events, outcomes, dead letters, truth).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A buffered JSON-lines writer; each call writes one line.
pub struct JsonLinesWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLinesWriter {
    pub fn create(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| FileError {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file = File::create(&path).map_err(|source| FileError {
            path: path.clone(),
            source,
        })?;
        Ok(JsonLinesWriter {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// Writes one line. A payload containing a newline would break the framing.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), FileError> {
        debug_assert!(!line.contains(&b'\n'));
        self.out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| FileError {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes and fsyncs.
    pub fn finish(mut self) -> Result<(), FileError> {
        let path = self.path.clone();
        let err = |source| FileError {
            path: path.clone(),
            source,
        };
        self.out.flush().map_err(err)?;
        self.out.get_ref().sync_all().map_err(err)
    }
}
