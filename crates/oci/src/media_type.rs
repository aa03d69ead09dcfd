//! Media types the registry understands, and the RFC 6838 shape check for the
//! ones it merely stores (layer and artifact types are open-ended).

use std::fmt;

pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str =
        "application/vnd.oci.image.layer.nondistributable.";
}

/// A media type checked against RFC 6838's `type "/" subtype` grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

impl MediaType {
    pub fn parse(s: &str) -> Option<MediaType> {
        let (ty, sub) = s.split_once('/')?;
        let sub = sub.split(';').next().unwrap_or(sub).trim_end();
        let ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 127
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        (ok(ty) && ok(sub)).then(|| MediaType(format!("{ty}/{sub}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_manifest(&self) -> bool {
        matches!(
            self.0.as_str(),
            media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST
        )
    }

    pub fn is_index(&self) -> bool {
        matches!(
            self.0.as_str(),
            media_types::OCI_INDEX | media_types::DOCKER_MANIFEST_LIST
        )
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(MediaType::parse(media_types::OCI_MANIFEST).is_some_and(|m| m.is_manifest()));
        assert!(MediaType::parse(media_types::DOCKER_MANIFEST_LIST).is_some_and(|m| m.is_index()));
        assert_eq!(
            MediaType::parse("application/json; charset=utf-8")
                .unwrap()
                .as_str(),
            "application/json"
        );
        for bad in [
            "",
            "application",
            "/json",
            "application/",
            "a b/c",
            "application/j son",
            "{}/x",
        ] {
            assert!(MediaType::parse(bad).is_none(), "{bad:?}");
        }
    }
}
