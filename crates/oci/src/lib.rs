//! Pure OCI types and validation: digests, repository names, tags, references,
//! media types, manifests and the distribution-spec error codes.
//!
//! This crate does no I/O and has no async code, so everything here is cheap to
//! table-test and to fuzz. Values are parsed once at the edge and passed around
//! by type, so the layers above never re-validate strings.

mod digest;
mod error_code;
mod manifest;
mod media_type;
mod name;
mod range;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind, ManifestRef, RefKind};
pub use media_type::{MediaType, media_types};
pub use name::{NameError, Reference, RepoName, Tag};
pub use range::{ByteRange, RangeError, parse_content_range, parse_range_header};

/// Manifests larger than this are refused, as the distribution spec allows
/// and Distribution does: they are held in memory and in the database.
pub const MANIFEST_SIZE_LIMIT: usize = 4 * 1024 * 1024;
