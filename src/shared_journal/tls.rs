//! Owns TLS to the shared journal. A URL with `sslmode=require` is served over TLS (rustls),
//! and the server's certificate must chain to a CA found where libpq looks for one — the file
//! named by `PGSSLROOTCERT`, else `~/.postgresql/root.crt` — and name the host of the URL.
//! (That is libpq's `verify-full`: stricter than its `require`, which encrypts without checking
//! who answers.) Without `sslmode=require` the connection is plain. It never connects.

use super::{JournalUrl, SharedJournalError};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, ClientConfig, RootCertStore};

/// The rustls configuration for connecting with `config` (the settings of `url`), or `None`
/// when they do not ask for TLS.
pub(super) fn client_config(
    url: &JournalUrl,
    config: &postgres::Config,
) -> Result<Option<ClientConfig>, SharedJournalError> {
    if !matches!(config.get_ssl_mode(), postgres::config::SslMode::Require) {
        return Ok(None);
    }
    let failed = |problem: String| SharedJournalError::Tls {
        url: url.to_string(),
        problem,
    };
    let path = root_cert_path().ok_or_else(|| {
        failed("sslmode=require needs the CA of the server's certificate: put it in ~/.postgresql/root.crt or name its file in PGSSLROOTCERT".into())
    })?;
    let pem = std::fs::read(&path).map_err(|error| {
        failed(format!(
            "cannot read the CA file {} ({error}); put the CA of the server's certificate there or name another file in PGSSLROOTCERT",
            path.display()
        ))
    })?;
    let mut roots = RootCertStore::empty();
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block
            .map_err(|error| failed(format!("{} is not a PEM file: {error}", path.display())))?;
        if block.label == "CERTIFICATE" {
            roots
                .add(CertificateDer::from(block.contents))
                .map_err(|error| failed(format!("{}: {error}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(failed(format!(
            "{} holds no certificate; put the CA of the server's certificate there",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| failed(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(config))
}

/// Where libpq looks for the trusted CAs: `PGSSLROOTCERT`, else `~/.postgresql/root.crt`.
fn root_cert_path() -> Option<PathBuf> {
    std::env::var_os("PGSSLROOTCERT")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
        })
}
