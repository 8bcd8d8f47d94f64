//! Apps on a node: see ARCHITECTURE.md, "Apps".

pub mod appstore;
pub mod backup;
pub mod component;
pub mod compose;
pub mod docker;
pub mod driver;
pub mod error;
pub mod ha;
pub mod import;
pub mod manager;
pub mod meta;
pub mod plan;
pub mod process;
pub mod reconcile;
pub mod state;

pub use component::{Apps, AppsHandle};
pub use error::AppError;
