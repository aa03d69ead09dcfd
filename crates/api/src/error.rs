//! The one place where errors become HTTP responses with the distribution
//! spec's JSON body: `{"errors":[{"code","message","detail"}]}`.
//!
//! Internal failures answer 500 with a generic message; their text goes into
//! a response extension that the request middleware logs, never to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::Error as CoreError;
use berth_oci::ErrorCode;
use serde_json::json;

/// The internal error behind a 500, for the request logger.
#[derive(Clone, Debug)]
pub(crate) struct InternalError(pub(crate) String);

#[derive(Debug)]
pub(crate) enum ApiError {
    Core(CoreError),
    /// An error found while parsing the request, before the core is called.
    Request {
        code: ErrorCode,
        status: StatusCode,
        message: String,
    },
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError::Core(e)
    }
}

impl ApiError {
    fn request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Request {
            code,
            status: StatusCode::from_u16(code.status()).expect("spec statuses are valid"),
            message: message.into(),
        }
    }

    pub(crate) fn name_invalid(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::NameInvalid, m)
    }

    pub(crate) fn digest_invalid(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::DigestInvalid, m)
    }

    pub(crate) fn manifest_invalid(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::ManifestInvalid, m)
    }

    pub(crate) fn manifest_unknown(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::ManifestUnknown, m)
    }

    pub(crate) fn upload_invalid(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::BlobUploadInvalid, m)
    }

    pub(crate) fn size_invalid(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::SizeInvalid, m)
    }

    /// A path under /v2 that names no endpoint.
    pub(crate) fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::NameUnknown, m)
    }

    /// A method the endpoint does not serve.
    pub(crate) fn method_not_allowed(m: impl Into<String>) -> ApiError {
        ApiError::request(ErrorCode::Unsupported, m)
    }

    /// A query parameter that is not what the endpoint takes.
    pub(crate) fn bad_parameter(m: impl Into<String>) -> ApiError {
        ApiError::Request {
            code: ErrorCode::Unsupported,
            status: StatusCode::BAD_REQUEST,
            message: m.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Core(e) => e.code(),
            ApiError::Request { code, .. } => Some(*code),
        }
    }
}

fn body(code: &str, message: &str) -> String {
    json!({ "errors": [{ "code": code, "message": message, "detail": null }] }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, extra): (
            StatusCode,
            &'static str,
            String,
            Option<(header::HeaderName, String)>,
        ) = match self {
            ApiError::Request {
                code,
                status,
                message,
            } => (status, code.as_str(), message, None),
            // Management outcomes, which the distribution spec has no code for.
            ApiError::Core(e @ CoreError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string(), None)
            }
            ApiError::Core(e @ CoreError::Conflict(_)) => {
                (StatusCode::CONFLICT, "CONFLICT", e.to_string(), None)
            }
            ApiError::Core(e @ CoreError::Invalid(_)) => {
                (StatusCode::BAD_REQUEST, "INVALID", e.to_string(), None)
            }
            ApiError::Core(e) => {
                let Some(code) = e.code() else {
                    let mut resp = (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "application/json")],
                        body("UNKNOWN", "internal server error; see the server log"),
                    )
                        .into_response();
                    resp.extensions_mut().insert(InternalError(e.to_string()));
                    return resp;
                };
                let status = match &e {
                    CoreError::UploadRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                    CoreError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                    CoreError::ManifestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::from_u16(code.status()).expect("spec statuses are valid"),
                };
                let extra = match &e {
                    // The client resumes from the range the upload really holds.
                    CoreError::UploadRange { current } => {
                        Some((header::RANGE, upload_range(*current)))
                    }
                    CoreError::RangeNotSatisfiable { size } => {
                        Some((header::CONTENT_RANGE, format!("bytes */{size}")))
                    }
                    CoreError::TooManyRequests { retry_after_secs } => {
                        Some((header::RETRY_AFTER, retry_after_secs.to_string()))
                    }
                    _ => None,
                };
                (status, code.as_str(), e.to_string(), extra)
            }
        };
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body(code, &message),
        )
            .into_response();
        if let Some((name, value)) = extra
            && let Ok(v) = HeaderValue::from_str(&value)
        {
            resp.headers_mut().insert(name, v);
        }
        resp
    }
}

/// The `Range` header value of an upload holding `offset` bytes. The spec
/// writes it inclusive; an empty upload is `0-0`, as Distribution answers.
pub(crate) fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}
