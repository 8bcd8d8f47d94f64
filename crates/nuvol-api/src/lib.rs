//! The nuvol agent's REST API: JSON over HTTP.
//!
//! - [`Api`]: the component. It serves every route the agent's components
//!   registered ([`nuvol_agent::http::HttpRoute`]), each behind its access
//!   rule, plus its own: `GET /v1/agent`, `GET /v1/members`,
//!   `GET /v1/agent/components`, `GET /v1/events` (Server-Sent Events of
//!   member changes and the components' events) and `GET /v1/openapi.json`:
//!   the OpenAPI 3.0 document assembled from this crate's `openapi.json`
//!   and every component's fragment.
//! - Auth: reads are open (the API binds to 127.0.0.1 by default); every
//!   write needs `Authorization: Bearer <token>`, compared in constant
//!   time, else 401 before the handler runs. [`token`] keeps the token in
//!   `<data_dir>/api-token` (mode 0600).
//! - Errors: `{"error": "...", "field": "..."}` with the status of the
//!   [`ApiError`] variant; validation errors name the field (`type`,
//!   `port`, `txt`, `checks[0].interval`, ...).
//! - [`ApiClient`]: a typed client for the CLI; [`ClientError`] carries the
//!   server's message and tells "agent not running" apart.

pub mod backend;
pub mod client;
pub mod openapi;
pub mod server;
pub mod token;

pub use backend::{AgentInfo, ApiEvent, CheckInfo, ComponentInfo, MemberInfo};
pub use client::{ApiClient, ClientError, EventStream};
pub use nuvol_agent::http::{ApiError, ErrorBody};
/// The HTTP method type of [`ApiClient::call_json`].
pub use reqwest::Method;
pub use server::{Api, ApiSettings, BASE_OPENAPI, SHUTDOWN_GRACE};
pub use token::TokenError;
