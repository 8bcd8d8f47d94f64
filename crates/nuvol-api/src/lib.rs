//! The nuvol agent's REST API: JSON over HTTP.
//!
//! - [`Backend`]: what the agent implements; the server holds an
//!   `Arc<dyn Backend>` and never touches the agent otherwise.
//! - [`bind`] / [`ApiServer`]: the server (axum). Endpoints, all JSON:
//!   `GET /v1/agent`, `GET /v1/members`, `GET|POST /v1/services`,
//!   `GET|DELETE /v1/services/{node}/{type}/{port}`, `GET /v1/checks`,
//!   `GET /v1/events` (Server-Sent Events), `GET /v1/openapi.json` (the
//!   OpenAPI 3.0 document, `openapi.json` in this crate) and `GET /metrics`
//!   (Prometheus / OpenMetrics text).
//! - Auth: reads are open (the API binds to 127.0.0.1 by default); every
//!   other method needs `Authorization: Bearer <token>`, compared in
//!   constant time, else 401 before the backend is called. [`token`] keeps
//!   the token in `<data_dir>/api-token` (mode 0600).
//! - Errors: `{"error": "...", "field": "..."}` with the status of the
//!   [`ApiError`] variant; validation errors name the field (`type`, `port`,
//!   `txt`, `checks[0].interval`, ...).
//! - [`ApiClient`]: a typed client for the CLI; [`ClientError`] carries the
//!   server's message and tells "agent not running" apart.

pub mod backend;
pub mod client;
pub mod error;
mod metrics;
pub mod server;
pub mod token;

pub use backend::{AgentInfo, ApiEvent, Backend, CheckInfo, MemberInfo};
pub use client::{ApiClient, ClientError, EventStream};
pub use error::{ApiError, ErrorBody};
pub use server::{bind, routes, ApiServer, OPENAPI_JSON};
pub use token::TokenError;
