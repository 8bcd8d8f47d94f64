//! The catalog's REST routes: `GET|POST /v1/services`,
//! `GET|DELETE /v1/services/{node}/{type}/{port}` and `GET /v1/checks`,
//! documented in this crate's `openapi.json` fragment. They reach the
//! catalog through [`CatalogApi`], which [`Catalog`] implements and tests
//! fake.

use crate::component::{Catalog, CatalogOpError};
use crate::model::{Health, Status};
use crate::{CatalogError, Filter, ServiceDef, ServiceEntry};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::future::BoxFuture;
use nuvol_agent::http::{
    body_bytes, encode_segment, parse_json, parse_query, query_param, Access, ApiError, HttpRoute,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The catalog's part of the OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the routes need from the catalog.
pub trait CatalogApi: Send + Sync + 'static {
    /// This node's name (only it removes its services).
    fn node_name(&self) -> String;
    /// A snapshot of the cluster-wide catalog, filtered by type and node.
    fn services(&self, filter: &Filter) -> Vec<ServiceEntry>;
    /// Publish on this node (replacing one with the same type and port);
    /// the route has already validated `def`.
    fn publish(&self, def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>>;
    /// Remove this node's `stype`/`port`; [`ApiError::NotFound`] if it does
    /// not publish it.
    fn unpublish(&self, stype: String, port: u16) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// One health check, flattened out of the catalog (`GET /v1/checks`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckInfo {
    pub node: String,
    #[serde(rename = "type")]
    pub stype: String,
    pub port: u16,
    /// `tcp`, `http` or `script`.
    pub kind: String,
    /// The address, URL or command.
    pub target: String,
    pub status: Health,
    pub output: String,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// A validation error of the catalog, named by field: `type`, `port`,
/// `txt`, `description`, or the field a `BadField` names.
pub fn catalog_error(e: CatalogError) -> ApiError {
    let field = match &e {
        CatalogError::BadType(_) => "type".to_owned(),
        CatalogError::BadPort(_) => "port".to_owned(),
        CatalogError::BadTxt(_) => "txt".to_owned(),
        CatalogError::BadDescription(_) => "description".to_owned(),
        CatalogError::BadField(f, _) => f.clone(),
        CatalogError::Base64(_)
        | CatalogError::Bzip2(_)
        | CatalogError::TooLarge
        | CatalogError::Json(_) => "services".to_owned(),
    };
    ApiError::BadRequest {
        field,
        message: e.to_string(),
    }
}

fn op_error(e: CatalogOpError) -> ApiError {
    match e {
        CatalogOpError::Invalid(c) => catalog_error(c),
        CatalogOpError::NotFound(m) => ApiError::NotFound(format!("no published service {m}")),
        e @ CatalogOpError::FromFile { .. } => ApiError::Forbidden(e.to_string()),
        CatalogOpError::Store(s) => ApiError::Internal(s.to_string()),
        e @ CatalogOpError::NotReady => ApiError::Unavailable(e.to_string()),
        CatalogOpError::Cluster(c) => c.into(),
    }
}

impl CatalogApi for Catalog {
    fn node_name(&self) -> String {
        Catalog::node_name(self).to_owned()
    }
    fn services(&self, filter: &Filter) -> Vec<ServiceEntry> {
        self.entries(filter)
    }
    fn publish(&self, def: ServiceDef) -> BoxFuture<'_, Result<ServiceEntry, ApiError>> {
        Box::pin(async move { Catalog::publish(self, def).await.map_err(op_error) })
    }
    fn unpublish(&self, stype: String, port: u16) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            Catalog::unpublish(self, &stype, Some(port))
                .await
                .map(|_| ())
                .map_err(op_error)
        })
    }
}

type Api = Arc<dyn CatalogApi>;

/// The routes, served by the REST API component.
pub fn routes(api: Api) -> Vec<HttpRoute> {
    use axum::routing::{delete, get, post};
    vec![
        HttpRoute::new(
            Method::GET,
            "/v1/services",
            Access::View,
            get(list_services).with_state(api.clone()),
        ),
        HttpRoute::new(
            Method::POST,
            "/v1/services",
            Access::Operate,
            post(publish).with_state(api.clone()),
        ),
        HttpRoute::new(
            Method::GET,
            "/v1/services/{node}/{type}/{port}",
            Access::View,
            get(get_service).with_state(api.clone()),
        ),
        HttpRoute::new(
            Method::DELETE,
            "/v1/services/{node}/{type}/{port}",
            Access::Operate,
            delete(unpublish).with_state(api.clone()),
        ),
        HttpRoute::new(
            Method::GET,
            "/v1/checks",
            Access::View,
            get(list_checks).with_state(api),
        ),
    ]
}

fn parse_status(s: &str) -> Result<Status, ApiError> {
    match s {
        "passing" => Ok(Status::Passing),
        "warning" => Ok(Status::Warning),
        "critical" => Ok(Status::Critical),
        "unavailable" => Ok(Status::Unavailable),
        _ => Err(ApiError::bad(
            "status",
            format!("invalid status {s:?}: expected passing, warning, critical or unavailable"),
        )),
    }
}

fn parse_health(s: &str) -> Result<Health, ApiError> {
    match s {
        "passing" => Ok(Health::Passing),
        "warning" => Ok(Health::Warning),
        "critical" => Ok(Health::Critical),
        _ => Err(ApiError::bad(
            "status",
            format!("invalid status {s:?}: expected passing, warning or critical"),
        )),
    }
}

fn check_type(t: &str) -> Result<(), ApiError> {
    crate::cloudy::validate_type(t).map_err(catalog_error)
}

fn parse_port(p: &str) -> Result<u16, ApiError> {
    crate::cloudy::parse_port(p).map_err(catalog_error)
}

async fn list_services(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(raw, &["type", "node", "status"])?;
    let stype = query_param(&q, "type");
    if let Some(t) = stype {
        check_type(t)?;
    }
    let status = query_param(&q, "status").map(parse_status).transpose()?;
    let filter = Filter {
        stype: stype.map(str::to_owned),
        node: query_param(&q, "node").map(str::to_owned),
    };
    // The catalog applies type and node; status is the route's own filter.
    let mut list = api.services(&filter);
    if let Some(s) = status {
        list.retain(|e| e.status == s);
    }
    Ok(Json(list).into_response())
}

async fn publish(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let def: ServiceDef = parse_json(&body)?;
    validate_def(&def)?;
    let entry = api.publish(def).await?;
    let location = format!(
        "/v1/services/{}/{}/{}",
        encode_segment(&entry.node),
        encode_segment(&entry.stype),
        entry.port
    );
    let mut resp = (StatusCode::CREATED, Json(entry)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Decode a [`ServiceDef`], naming the field at fault on error.
pub fn parse_service_def(body: &[u8]) -> Result<ServiceDef, ApiError> {
    parse_json(body)
}

/// [`ServiceDef::validate`], naming a failing check's field as
/// `checks[i].field`.
pub fn validate_def(def: &ServiceDef) -> Result<(), ApiError> {
    match def.validate() {
        Ok(()) => Ok(()),
        Err(e @ CatalogError::BadField(..)) => {
            for (i, c) in def.checks.iter().enumerate() {
                if let Err(nuvol_checks::model::CheckError(f, m)) = c.validate() {
                    let field = format!("checks[{i}].{f}");
                    return Err(ApiError::bad(
                        field.clone(),
                        format!("invalid {field}: {m}"),
                    ));
                }
            }
            Err(catalog_error(e))
        }
        Err(e) => Err(catalog_error(e)),
    }
}

fn find_service(
    api: &Api,
    node: &str,
    stype: &str,
    port: &str,
) -> Result<(u16, Option<ServiceEntry>), ApiError> {
    check_type(stype)?;
    let port = parse_port(port)?;
    let filter = Filter {
        stype: Some(stype.to_owned()),
        node: Some(node.to_owned()),
    };
    let found = api
        .services(&filter)
        .into_iter()
        .find(|e| e.port == port && filter.matches(e));
    Ok((port, found))
}

async fn get_service(
    State(api): State<Api>,
    Path((node, stype, port)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    match find_service(&api, &node, &stype, &port)? {
        (_, Some(e)) => Ok(Json(e).into_response()),
        (port, None) => Err(ApiError::NotFound(format!(
            "no service {stype}/{port} on node {node:?}"
        ))),
    }
}

async fn unpublish(
    State(api): State<Api>,
    Path((node, stype, port)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_type(&stype)?;
    let port = parse_port(&port)?;
    let me = api.node_name();
    if node != me {
        return Err(ApiError::Forbidden(format!(
            "service {stype}/{port} belongs to node {node:?}; only that node can remove it (this is {me:?})"
        )));
    }
    api.unpublish(stype, port).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_checks(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(raw, &["node", "status"])?;
    let status = query_param(&q, "status").map(parse_health).transpose()?;
    let filter = Filter {
        stype: None,
        node: query_param(&q, "node").map(str::to_owned),
    };
    let checks: Vec<CheckInfo> = api
        .services(&filter)
        .into_iter()
        .filter(|e| filter.matches(e))
        .flat_map(|e| {
            let (node, stype, port) = (e.node, e.stype, e.port);
            e.checks.into_iter().map(move |c| CheckInfo {
                node: node.clone(),
                stype: stype.clone(),
                port,
                kind: c.kind,
                target: c.target,
                status: c.status,
                output: c.output,
                updated_ms: c.updated_ms,
            })
        })
        .filter(|c| status.is_none_or(|s| c.status == s))
        .collect();
    Ok(Json(checks).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_fields() {
        let f = |s: &str| {
            parse_service_def(s.as_bytes())
                .err()
                .and_then(|e| e.field().map(str::to_owned))
        };
        assert_eq!(f("{"), Some("body".into()));
        assert_eq!(f("[]"), Some("body".into()));
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"checks":[{"tcp":"a:1","bogus":1}]}"#),
            Some("checks[0].bogus".into())
        );
        assert_eq!(
            f(r#"{"type":"a","port":1,"checks":[]}"#),
            Some("description".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"bogus":1}"#),
            Some("bogus".into())
        );
        assert_eq!(f(r#"{"type":"a","description":"d"}"#), Some("port".into()));
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":70000}"#),
            Some("port".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":"x"}"#),
            Some("port".into())
        );
        assert_eq!(
            f(r#"{"type":1,"description":"d","port":1}"#),
            Some("type".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"txt":{"a":1}}"#),
            Some("txt.a".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1,"checks":[{"tcp":"a:1","script":"x"}]}"#),
            Some("checks[0]".into())
        );
        assert_eq!(
            f(r#"{"type":"a","description":"d","port":1} x"#),
            Some("body".into())
        );
    }
}
