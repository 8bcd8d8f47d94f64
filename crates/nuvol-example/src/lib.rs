//! The smallest complete component, the template for a new capability:
//!
//! - its own config section, `[example]` with `greeting` (flag
//!   `--example-greeting`);
//! - a route, `GET /v1/example` (open to readers), with its OpenAPI
//!   fragment;
//! - a metric, `nuvol_example_greetings_total`;
//! - an owned tag, `example`, which it sets to its greeting and which
//!   `nuvol tags` may not touch.
//!
//! Adding it to the agent is one line: `.with::<nuvol_example::Example>()`
//! (see `crates/nuvol/tests/example_component.rs`).

use axum::http::Method;
use nuvol_agent::config::{ConfigError, Validate};
use nuvol_agent::http::{Access, HttpRoute};
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, OwnedTags, RunCtx};
use prometheus_client::metrics::counter::Counter;
use std::collections::BTreeMap;

nuvol_agent::settings! {
    /// The example component.
    pub struct ExampleSettings in "example", "Example" {
        /// The greeting `GET /v1/example` answers, also set as this node's
        /// `example` tag.
        greeting: String = "hello".into(), flag "example-greeting";
    }
}

impl Validate for ExampleSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.greeting.is_empty() || self.greeting.len() > 64 {
            return Err(ConfigError::invalid::<Self>(
                "greeting",
                "must be 1 to 64 bytes",
            ));
        }
        Ok(())
    }
}

/// The OpenAPI fragment of its route.
const OPENAPI: &str = r#"{
  "paths": {
    "/v1/example": {
      "get": {
        "operationId": "getExample",
        "tags": ["meta"],
        "summary": "The example component's greeting.",
        "responses": {
          "200": {
            "description": "The greeting.",
            "content": {"application/json": {"schema": {"type": "object", "properties": {"greeting": {"type": "string"}}}}}
          }
        }
      }
    }
  }
}"#;

/// The component.
pub struct Example {
    greeting: String,
    tag: OwnedTags,
}

impl Component for Example {
    type Config = ExampleSettings;
    const NAME: &'static str = "example";

    fn build(cfg: ExampleSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let greetings: Counter = Counter::default();
        ctx.metrics()
            .register("example_greetings", "Greetings served", greetings.clone());
        let greeting = cfg.greeting.clone();
        ctx.http_route(HttpRoute::new(
            Method::GET,
            "/v1/example",
            Access::View,
            axum::routing::get(move || {
                greetings.inc();
                let body = serde_json::json!({ "greeting": greeting });
                async move { axum::Json(body) }
            }),
        ))?;
        ctx.openapi(OPENAPI)?;
        let tag = ctx.own_tags(&["example"])?;
        Ok(Some(Example {
            greeting: cfg.greeting,
            tag,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let mine = BTreeMap::from([("example".to_owned(), self.greeting.clone())]);
        // Written only if no other tag changed since it was read.
        loop {
            let current = self.tag.current().await?;
            match self.tag.replace(current.version, mine.clone()).await {
                Ok(()) => break,
                Err(nuvol_agent::ClusterError::TagsChanged) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        ctx.ready();
        ctx.stopping().await;
        tracing::debug!("example component stopped");
        Ok(())
    }
}
