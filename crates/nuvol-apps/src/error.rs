//! The apps' errors: each names its cause (the field, the key, the app, the
//! port, the daemon) so the CLI, the REST API and the dashboard can show it
//! as it is.

/// What went wrong with an app.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field has a bad value.
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// A key of the Compose file nuvol does not carry out.
    #[error("{key}: not supported by nuvol{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Unsupported { key: String, hint: Option<String> },
    /// The file is not YAML or not a Compose file.
    #[error("{file}: {why}")]
    Parse { file: String, why: String },
    /// A required parameter was not given.
    #[error("parameter {0} is required (give it with --set {0}=VALUE)")]
    MissingParam(String),
    /// `--set` named a parameter the app does not declare.
    #[error("parameter {0} is not declared by this app")]
    UnknownParam(String),
    #[error("no app named {0:?}")]
    NotFound(String),
    #[error("an app named {0:?} is already installed")]
    Exists(String),
    /// A host port another app or a published service holds.
    #[error("port {port}/{proto} is already used by {by}")]
    PortTaken {
        port: u16,
        proto: String,
        by: String,
    },
    /// The app does not run on this CPU.
    #[error("{app} runs on {wants}, not on this node's {arch}")]
    Arch {
        app: String,
        wants: String,
        arch: String,
    },
    /// An image is not on this node (there may be no registry to pull it
    /// from).
    #[error("image {image} is not on this node and could not be pulled: {why}")]
    Image { image: String, why: String },
    /// A process app's program (or its user) cannot be run.
    #[error("program {program}: {why}")]
    Program { program: String, why: String },
    /// The container engine refused or is unreachable.
    #[error("docker: {0}")]
    Docker(String),
    /// The engine is older than nuvol supports.
    #[error("the Docker daemon speaks API {have}; nuvol needs at least {need}")]
    TooOld { have: String, need: String },
    #[error("store: {0}")]
    Store(String),
    /// Another operation on this app is running.
    #[error("{0} is busy ({1}); try again when it ends")]
    Busy(String, String),
    /// The new version did not come up; what was done about it
    /// (`rolled back to version 1.0`, or why the rollback failed too).
    #[error("upgrade of {app} failed: {why}; {rollback}")]
    UpgradeFailed {
        app: String,
        why: String,
        rollback: String,
    },
    /// A backup archive that cannot be restored (corrupt, truncated, not
    /// a nuvol backup, another format version, unsafe paths, too large).
    #[error("backup archive {path}: {why}")]
    Archive { path: String, why: String },
    /// The node holds something the operation would overwrite.
    #[error("{0}")]
    Conflict(String),
    /// The apps component has no engine (yet): why.
    #[error("apps are not available: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl AppError {
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> AppError {
        AppError::Invalid {
            field: field.to_owned(),
            why: why.to_string(),
        }
    }

    pub fn unsupported(key: impl Into<String>) -> AppError {
        AppError::Unsupported {
            key: key.into(),
            hint: None,
        }
    }

    /// The HTTP status the REST API answers it with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Invalid { .. }
            | AppError::Unsupported { .. }
            | AppError::Parse { .. }
            | AppError::MissingParam(_)
            | AppError::UnknownParam(_)
            | AppError::Arch { .. }
            | AppError::Program { .. }
            | AppError::Archive { .. } => 400,
            AppError::NotFound(_) => 404,
            AppError::Exists(_)
            | AppError::PortTaken { .. }
            | AppError::Busy(..)
            | AppError::Conflict(_)
            | AppError::UpgradeFailed { .. } => 409,
            AppError::Image { .. } => 422,
            AppError::Docker(_) | AppError::TooOld { .. } | AppError::Unavailable(_) => 503,
            AppError::Store(_) | AppError::Other(_) => 500,
        }
    }
}
