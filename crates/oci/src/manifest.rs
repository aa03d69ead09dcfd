//! Manifest parsing and validation for the four manifest media types the
//! registry serves (OCI image manifest and index, Docker schema 2 manifest and
//! manifest list), including OCI 1.1 artifacts (`artifactType`, `subject`).
//!
//! Validation here is structural only; whether referenced content exists is
//! the core's business. Every error names the offending field.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media_type::{MediaType, media_types};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("field {field}: {problem}")]
    Field { field: String, problem: String },
    #[error("manifest has no mediaType field and the Content-Type {0:?} is not a manifest type")]
    UnknownMediaType(String),
    #[error("manifest media type {0:?} is not supported (schema 1 manifests are deprecated)")]
    Unsupported(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    ContentTypeMismatch { body: String, header: String },
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A content descriptor after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Blob,
    Manifest,
}

/// Something a manifest points at that must exist in the same repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    pub digest: Digest,
    pub kind: RefKind,
    /// The size the descriptor claims, checked against the stored content.
    pub size: u64,
    /// Where in the manifest the reference sits, for error messages.
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: MediaType,
    pub kind: ManifestKind,
    pub subject: Option<Descriptor>,
    /// The artifact type the referrers API reports: `artifactType`, else the
    /// config's media type for image manifests (as the spec says).
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parses `body` as a manifest. `content_type` is the request's
    /// Content-Type, used when the body has no `mediaType` (valid for OCI).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        let header = content_type.and_then(MediaType::parse);
        let media_type = match (&raw.media_type, &header) {
            (Some(body_type), header) => {
                let body_type = MediaType::parse(body_type).ok_or_else(|| {
                    field("mediaType", format!("{body_type:?} is not a media type"))
                })?;
                if let Some(h) = header
                    && (h.is_manifest() || h.is_index())
                    && *h != body_type
                {
                    return Err(ManifestError::ContentTypeMismatch {
                        body: body_type.to_string(),
                        header: h.to_string(),
                    });
                }
                body_type
            }
            (None, Some(h)) if h.is_manifest() || h.is_index() => h.clone(),
            (None, _) => {
                return Err(ManifestError::UnknownMediaType(
                    content_type.unwrap_or_default().to_string(),
                ));
            }
        };
        match media_type.as_str() {
            media_types::DOCKER_SCHEMA1 | media_types::DOCKER_SCHEMA1_SIGNED => {
                return Err(ManifestError::Unsupported(media_type.to_string()));
            }
            _ if media_type.is_manifest() || media_type.is_index() => {}
            other => return Err(ManifestError::Unsupported(other.to_string())),
        }
        if raw.schema_version != Some(2) {
            return Err(field("schemaVersion", "must be 2"));
        }
        let docker = media_type.as_str().starts_with("application/vnd.docker.");
        if docker && raw.media_type.is_none() {
            return Err(field("mediaType", "is required for Docker manifests"));
        }
        let artifact_type = raw
            .artifact_type
            .as_deref()
            .map(|a| check_media_type("artifactType", a))
            .transpose()?;
        let subject = raw
            .subject
            .as_ref()
            .map(|s| descriptor("subject", s))
            .transpose()?;

        let kind = if media_type.is_manifest() {
            if raw.manifests.is_some() {
                return Err(field("manifests", "is not allowed in an image manifest"));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| field("config", "is required"))?;
            let config = descriptor("config", config)?;
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| field("layers", "is required"))?
                .iter()
                .enumerate()
                .map(|(i, l)| descriptor(&format!("layers[{i}]"), l))
                .collect::<Result<Vec<_>, _>>()?;
            ManifestKind::Image { config, layers }
        } else {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(field("config", "is not allowed in an index"));
            }
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| field("manifests", "is required"))?
                .iter()
                .enumerate()
                .map(|(i, m)| descriptor(&format!("manifests[{i}]"), m))
                .collect::<Result<Vec<_>, _>>()?;
            ManifestKind::Index { manifests }
        };
        let artifact_type = artifact_type
            .map(|a| a.to_string())
            .or_else(|| match &kind {
                ManifestKind::Image { config, .. } => Some(config.media_type.to_string()),
                ManifestKind::Index { .. } => None,
            });
        Ok(Manifest {
            media_type,
            kind,
            subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Blobs and child manifests that must exist in the repository before this
    /// manifest is accepted. The subject is deliberately absent: the spec lets
    /// a referrer be pushed before its subject. Foreign (non-distributable)
    /// layers live elsewhere by definition.
    pub fn references(&self) -> Vec<ManifestRef> {
        let reference = |d: &Descriptor, kind, field: String| ManifestRef {
            digest: d.digest.clone(),
            kind,
            size: d.size,
            field,
        };
        match &self.kind {
            ManifestKind::Image { config, layers } => {
                std::iter::once(reference(config, RefKind::Blob, "config".into()))
                    .chain(
                        layers
                            .iter()
                            .enumerate()
                            .filter(|(_, l)| !is_foreign(l))
                            .map(|(i, l)| reference(l, RefKind::Blob, format!("layers[{i}]"))),
                    )
                    .collect()
            }
            ManifestKind::Index { manifests } => manifests
                .iter()
                .enumerate()
                .map(|(i, m)| reference(m, RefKind::Manifest, format!("manifests[{i}]")))
                .collect(),
        }
    }
}

fn is_foreign(d: &Descriptor) -> bool {
    let mt = d.media_type.as_str();
    mt == media_types::DOCKER_FOREIGN_LAYER
        || mt.starts_with(media_types::OCI_NONDISTRIBUTABLE_PREFIX)
}

fn check_media_type(name: &str, value: &str) -> Result<MediaType, ManifestError> {
    MediaType::parse(value).ok_or_else(|| field(name, format!("{value:?} is not a media type")))
}

fn descriptor(name: &str, raw: &RawDescriptor) -> Result<Descriptor, ManifestError> {
    let media_type = raw
        .media_type
        .as_deref()
        .ok_or_else(|| field(format!("{name}.mediaType"), "is required"))?;
    let media_type = check_media_type(&format!("{name}.mediaType"), media_type)?;
    let digest = raw
        .digest
        .as_deref()
        .ok_or_else(|| field(format!("{name}.digest"), "is required"))?;
    let digest =
        Digest::parse(digest).map_err(|e| field(format!("{name}.digest"), e.to_string()))?;
    let size = raw
        .size
        .ok_or_else(|| field(format!("{name}.size"), "is required"))?;
    let size = u64::try_from(size)
        .map_err(|_| field(format!("{name}.size"), format!("{size} is negative")))?;
    let artifact_type = raw
        .artifact_type
        .as_deref()
        .map(|a| check_media_type(&format!("{name}.artifactType"), a).map(|m| m.to_string()))
        .transpose()?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        annotations: raw.annotations.clone(),
        urls: raw.urls.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    const D2: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":0}}]{extra}}}"#,
            media_types::OCI_MANIFEST
        )
    }

    #[test]
    fn image_manifest_and_its_references() {
        let m = Manifest::parse(image("").as_bytes(), None).unwrap();
        assert!(m.media_type.is_manifest());
        assert_eq!(m.references().len(), 2);
        assert_eq!(m.references()[0].kind, RefKind::Blob);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn artifact_with_subject() {
        let extra = format!(
            r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{}","digest":"{D2}","size":7}},"annotations":{{"a":"b"}}"#,
            media_types::OCI_MANIFEST
        );
        let m = Manifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.subject.unwrap().digest.as_str(), D2);
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn index_references_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_types::DOCKER_MANIFEST_LIST,
            media_types::DOCKER_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert!(m.media_type.is_index());
        assert_eq!(m.references()[0].kind, RefKind::Manifest);
    }

    #[test]
    fn media_type_from_content_type() {
        let body = image("").replace(
            &format!(r#""mediaType":"{}","#, media_types::OCI_MANIFEST),
            "",
        );
        assert!(!body.contains(media_types::OCI_MANIFEST));
        let m = Manifest::parse(body.as_bytes(), Some(media_types::OCI_MANIFEST)).unwrap();
        assert!(m.media_type.is_manifest());
        assert!(matches!(
            Manifest::parse(body.as_bytes(), Some("application/json")),
            Err(ManifestError::UnknownMediaType(_))
        ));
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = image("").replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            media_types::DOCKER_FOREIGN_LAYER,
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.references().len(), 1);
    }

    #[test]
    fn invalid_manifests_name_the_field() {
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            ("not json".into(), None, "JSON"),
            ("[]".into(), None, "JSON"),
            (
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                None,
                "schemaVersion",
            ),
            (image("").replace(D1, "sha256:abc"), None, "config.digest"),
            (
                image("").replace("\"size\":0", "\"size\":-1"),
                None,
                "layers[0].size",
            ),
            (
                image("").replace(r#""size":2"#, r#""size":"2""#),
                None,
                "JSON",
            ),
            (
                image("").replace("application/vnd.oci.image.config.v1+json", "nonsense"),
                None,
                "config.mediaType",
            ),
            (image(r#","manifests":[]"#), None, "manifests"),
            (image(r#","artifactType":"bad type""#), None, "artifactType"),
            (
                image("").replace(media_types::OCI_MANIFEST, media_types::DOCKER_SCHEMA1),
                None,
                "not supported",
            ),
            (image(""), Some(media_types::OCI_INDEX), "does not match"),
            (
                image("").replace(media_types::OCI_MANIFEST, "application/vnd.example+json"),
                None,
                "not supported",
            ),
        ];
        for (body, ct, expect) in cases {
            let err = Manifest::parse(body.as_bytes(), ct)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{body}: {err} lacks {expect:?}");
        }
    }
}
