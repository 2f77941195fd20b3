//! Localized SMS templates: Fluent catalogs, locale negotiation, SMS cost.

mod catalog;
pub mod sms;

pub use catalog::{Catalog, CatalogError, Direction, Origin, RenderError, Rendered};
