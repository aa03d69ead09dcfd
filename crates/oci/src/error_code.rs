//! The distribution spec's error codes, in one table: wire name, default HTTP
//! status and the spec's message. The HTTP layer is the only user of `status`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $message:literal;)*) => {
        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears in the JSON error body.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            /// The status the spec pairs with the code; a caller may use a more
            /// precise one (416 for a bad upload range, 413 for a large manifest).
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }

            pub fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message),* }
            }
        }
    };
}

error_codes! {
    BlobUnknown => "BLOB_UNKNOWN", 404, "blob unknown to registry";
    BlobUploadInvalid => "BLOB_UPLOAD_INVALID", 400, "blob upload invalid";
    BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry";
    DigestInvalid => "DIGEST_INVALID", 400, "provided digest did not match uploaded content";
    ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry";
    ManifestInvalid => "MANIFEST_INVALID", 400, "manifest invalid";
    ManifestUnknown => "MANIFEST_UNKNOWN", 404, "manifest unknown to registry";
    NameInvalid => "NAME_INVALID", 400, "invalid repository name";
    NameUnknown => "NAME_UNKNOWN", 404, "repository name not known to registry";
    SizeInvalid => "SIZE_INVALID", 400, "provided length did not match content length";
    Unauthorized => "UNAUTHORIZED", 401, "authentication required";
    Denied => "DENIED", 403, "requested access to the resource is denied";
    Unsupported => "UNSUPPORTED", 405, "the operation is unsupported";
    TooManyRequests => "TOOMANYREQUESTS", 429, "too many requests";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_unique() {
        assert_eq!(ErrorCode::ALL.len(), 14);
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 14);
        for code in ErrorCode::ALL {
            assert!((400..500).contains(&code.status()), "{code:?}");
            assert!(!code.message().is_empty());
        }
        assert_eq!(ErrorCode::Unsupported.status(), 405);
    }
}
