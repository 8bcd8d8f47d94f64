//! Apps on a node: see ARCHITECTURE.md, "Apps".

pub mod appstore;
pub mod compose;
pub mod driver;
pub mod error;
pub mod import;
pub mod meta;
pub mod plan;

pub use error::AppError;
