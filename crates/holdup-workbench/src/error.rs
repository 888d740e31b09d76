//! The workbench's domain errors: what went wrong and what to do, as a
//! kind and a message. No HTTP here: the API maps kinds to status codes
//! (`api::status_of`).

/// What kind of refusal or failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or out of range.
    BadRequest,
    /// No valid credentials.
    Unauthenticated,
    /// The caller may not do this (role, ownership, policy).
    Forbidden,
    /// No such thing.
    NotFound,
    /// The thing is not in a state that allows this.
    Conflict,
    /// The input was understood but refused (a script failing its checks,
    /// a damaged recording).
    Unprocessable,
    /// Over a size limit or a quota.
    TooLarge,
    /// The store's disk is full.
    StoreFull,
    /// Something this needs is missing on the server (BPF stats, a binary).
    Unavailable,
    /// A fault of the server.
    Internal,
}

/// A refusal or failure, with a message saying why and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What kind of error.
    pub kind: ErrorKind,
    /// Why, and what to do.
    pub message: String,
}

/// Results of workbench operations.
pub type WbResult<T> = Result<T, Error>;

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, m)
    }
    /// [`ErrorKind::Forbidden`].
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, m)
    }
    /// [`ErrorKind::NotFound`].
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, m)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, m)
    }
    /// [`ErrorKind::Internal`].
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Self::new(
                ErrorKind::StoreFull,
                "the workbench store's disk is full: nothing was changed; free space where its database lives (holdup workbench serve --db) and retry",
            );
        }
        Self::internal(format!("store error: {e}"))
    }
}
