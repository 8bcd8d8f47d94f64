//! Errors of the API, and their JSON shape on the wire.

use nuvol_catalog::CatalogError;
use serde::{Deserialize, Serialize};

/// An error a [`crate::Backend`] (or the API itself) reports; each variant
/// maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400; `field` names the offending field or parameter.
    #[error("{message}")]
    BadRequest { field: String, message: String },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 503 (e.g. the agent is shutting down, or the port is taken at bind).
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::NotFound(_) => 404,
            ApiError::Forbidden(_) => 403,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The field a 400 names.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The JSON body sent for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            field: self.field().map(str::to_owned),
        }
    }
}

/// A validation error of the catalog, named by field: `type`, `port`,
/// `txt`, `description`, or the field a `BadField` names.
impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
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
}

/// Every error response: `{"error": "...", "field": "..."}` (`field` only
/// when one is at fault).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
