//! Health checks of the services a node publishes, with Consul's semantics.
//!
//! A [`CheckDef`](model::CheckDef) is one of:
//!
//! - **TCP**: passing when a connection to `host:port` (host names are
//!   resolved, every address is tried) opens within the timeout.
//! - **HTTP(S)**: `GET url`; passing when the response status equals the
//!   expected one (200 by default), critical otherwise or on any error. The
//!   output is the status line and the start of the body (`HTTP 503 Service
//!   Unavailable: ...`). TLS is rustls; `tls_skip_verify` accepts self-signed
//!   certificates. At most [`MAX_REDIRECTS`] redirects are followed, no proxy
//!   is used and connections are not kept alive (every run opens a new one,
//!   as Consul does).
//! - **Script**: `sh -c command` in its own process group, stdin null,
//!   stdout and stderr captured up to [`MAX_CHECK_OUTPUT`] bytes. Exit 0 is
//!   passing, 1 warning, anything else (or death by a signal) critical. On
//!   timeout the whole process group is killed and the result is critical.
//!   Processes the script leaves behind in its group are killed when it exits.
//!
//! Any run that takes longer than the check's `timeout` is critical
//! (`timed out after 5s`).
//!
//! [`run_once`] runs one check; [`Runner`] keeps one tokio task per check of
//! each service, runs it at once and then every `interval` (plus up to 10%
//! random jitter), and sends every result as a [`CheckUpdate`]. A check that
//! has not produced a result yet counts as critical, as in Consul.

pub mod component;
pub mod model;
mod output;
mod run;
mod runner;

pub use component::{Checks, ChecksComponent};
pub use model::MAX_CHECK_OUTPUT;
pub use run::{run_once, MAX_REDIRECTS};
pub use runner::{CheckUpdate, Runner, MIN_INTERVAL};
