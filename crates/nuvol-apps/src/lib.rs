//! Apps on a node: see ARCHITECTURE.md, "Apps".

pub mod compose;
pub mod docker;
pub mod driver;
pub mod error;
pub mod meta;
pub mod plan;

pub use error::AppError;
