//! The core's error type. Each variant is a domain outcome; [`Error::code`]
//! gives the spec's error code and the HTTP layer maps it to a response.

use berth_oci::{Digest, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository {0} is not known")]
    NameUnknown(String),
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("upload session {0} is not known in this repository")]
    UploadUnknown(String),
    /// A chunk did not start where the upload ends; the client resumes from
    /// `current` (answered as 416 with a `Range` header).
    #[error("chunk does not start at the upload's current offset {current}")]
    UploadRange { current: u64 },
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    #[error("digest {expected} does not match the uploaded content, which is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("manifest {0} is not known in this repository")]
    ManifestUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references {field} {digest}, which is not in this repository")]
    ManifestBlobUnknown { field: String, digest: Digest },
    #[error("manifest is {size} bytes; the limit is {limit}")]
    ManifestTooLarge { size: usize, limit: usize },
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    Unsupported(String),
    /// No credentials, bad credentials, or a token that does not carry
    /// what the request needs (answered 401 with a challenge).
    #[error("{message}")]
    Unauthenticated {
        message: String,
        problem: Option<berth_auth::BearerError>,
    },
    /// Authenticated and not allowed (403).
    #[error("{0}")]
    Denied(String),
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// A management request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A management request conflicts with what exists (a duplicate name).
    #[error("{0}")]
    Conflict(String),
    /// A management request's field is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] berth_storage::Error),
    #[error(transparent)]
    Meta(#[from] berth_meta::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The distribution-spec code, or `None` for internal failures (5xx).
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::NameUnknown(_) => ErrorCode::NameUnknown,
            Error::BlobUnknown(_) => ErrorCode::BlobUnknown,
            Error::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            Error::UploadRange { .. } | Error::UploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            Error::DigestMismatch { .. } | Error::DigestInvalid(_) => ErrorCode::DigestInvalid,
            Error::SizeInvalid(_) => ErrorCode::SizeInvalid,
            Error::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            Error::ManifestInvalid(_) | Error::ManifestTooLarge { .. } => {
                ErrorCode::ManifestInvalid
            }
            Error::ManifestBlobUnknown { .. } => ErrorCode::ManifestBlobUnknown,
            Error::RangeNotSatisfiable { .. } => ErrorCode::SizeInvalid,
            Error::Unsupported(_) => ErrorCode::Unsupported,
            Error::Unauthenticated { .. } => ErrorCode::Unauthorized,
            Error::Denied(_) => ErrorCode::Denied,
            Error::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            // Not distribution-spec codes: the HTTP layer names them itself.
            Error::NotFound(_) => ErrorCode::NameUnknown,
            Error::Conflict(_) | Error::Invalid(_) => ErrorCode::Unsupported,
            // A client that disconnects mid-body gets this if it still listens.
            Error::Storage(berth_storage::Error::Body(_)) => ErrorCode::BlobUploadInvalid,
            Error::Storage(_) | Error::Meta(_) => return None,
        })
    }
}
