//! What goes wrong keeping the lake.

/// What went wrong writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake location {location:?}: {why}")]
    Location { location: String, why: String },
    #[error("lake store: {0}")]
    Store(#[from] object_store::Error),
    #[error("encoding lake rows: {0}")]
    Encode(String),
    #[error("lake position {path}: {why}")]
    Position { path: String, why: String },
}
