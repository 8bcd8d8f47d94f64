//! The community service catalog.
//!
//! - [`cloudy`]: Cloudy / avahi-ps service records and their `services`
//!   Serf tag (JSON, bzip2, base64), with validation of avahi-ps arguments.
//!
//! The rest of the catalog (persistence, health checks, DNS, mDNS, REST API)
//! builds on these records; see issue "Community service catalog".

pub mod api;
pub mod cloudy;
pub mod component;
pub mod files;
pub mod model;
pub mod store;
pub mod sync;
pub mod view;

pub use cloudy::{CatalogError, CloudyService};
pub use model::{
    CheckDef, CheckKind, CheckState, CheckView, Filter, Health, ServiceDef, ServiceEntry, Source,
    Status,
};
