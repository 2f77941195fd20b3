//! Localized SMS templates: Fluent catalogs, locale negotiation, SMS cost.
//!
//! `catalog` holds and renders the messages; `select` decides plural
//! selects before Fluent formats, with `plural`'s CLDR rules over the number
//! as `numbers` writes it in the locale; `negotiate` reads `Accept-Language`.

mod catalog;
pub mod negotiate;
mod numbers;
mod plural;
mod select;
pub mod sms;

pub use catalog::{Catalog, CatalogError, Direction, Origin, RenderError, Rendered};
