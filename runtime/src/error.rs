//! The runtime's error: what failed (a sentence a user can act on) and why
//! (the underlying error). The binary prints the chain.

use crate::config::ConfigLoadError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigLoadError),
    /// `what` failed because of `source`.
    #[error("{what}: {source}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A condition the input or the setup does not meet.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// `.context("what failed")` on any result whose error is a std error.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::Failed {
            what: what.into(),
            source: Box::new(e),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| RuntimeError::Failed {
            what: what().into(),
            source: Box::new(e),
        })
    }
}

impl RuntimeError {
    /// This error seen from `what` the caller was doing.
    pub fn context(self, what: impl Into<String>) -> RuntimeError {
        RuntimeError::Failed {
            what: what.into(),
            source: Box::new(self),
        }
    }
}

/// `Err(RuntimeError::Invalid(...))` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err($crate::RuntimeError::Invalid(format!($($arg)+)));
        }
    };
}

/// A `RuntimeError::Invalid` from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)+) => {
        $crate::RuntimeError::Invalid(format!($($arg)+))
    };
}
