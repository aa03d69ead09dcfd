//! The rustls client configuration for `ldaps://` and StartTLS.
//!
//! The aws-lc-rs provider is passed explicitly
//! (`ClientConfig::builder_with_provider`): when both ring and aws-lc-rs are
//! compiled into the binary, `ClientConfig::builder()` panics for want of a
//! process-level default, and ldap3's own default configuration calls it.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::config::LdapConfig;
use crate::error::LdapError;

/// `None` when the connection is not encrypted.
pub(crate) fn client_config(config: &LdapConfig) -> Result<Option<Arc<ClientConfig>>, LdapError> {
    if !config.uses_tls() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| LdapError::Tls(format!("cannot read {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| LdapError::Tls(format!("{}: bad PEM: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    LdapError::Tls(format!("{}: unusable certificate: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(LdapError::Tls(format!(
                    "{}: no CERTIFICATE in it",
                    path.display()
                )));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Like browsers: skip the odd unparsable system certificate.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(LdapError::Tls(
                    "not set and no system CA certificates were found; set auth.ldap.ca_file"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Tls(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}
