//! Feature `rustls`: the TLS configuration a [`Db`](crate::Db) gets when its connection
//! string asks for TLS (`sslmode=require`, `verify-full`, ...) and
//! [`DbBuilder::tls`](crate::DbBuilder::tls) gives none: rustls's `ring` provider, its safe
//! default protocol versions, and the roots of the enabled roots features
//! (`webpki-roots`, `native-roots`), as pool-http's built-in configuration.

use std::sync::OnceLock;

use crate::Error;

/// The built-in configuration, made once per process (reading the system's roots is file
/// I/O); a failure is not kept, so the next build tries again.
static BUILT_IN: OnceLock<rustls::ClientConfig> = OnceLock::new();

/// The built-in configuration: `None` with no roots feature (the caller then says which
/// feature to enable).
///
/// # Errors
/// A config error (knob `tls`) when `native-roots` is the only roots feature and the system
/// has no certificate rustls can read.
pub(crate) fn built_in() -> Result<Option<rustls::ClientConfig>, Error> {
    if let Some(config) = BUILT_IN.get() {
        return Ok(Some(config.clone()));
    }
    #[allow(unused_mut)]
    let mut roots = rustls::RootCertStore::empty();
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "native-roots")]
    {
        // Per-file errors are skipped (as curl does): one unreadable file must not cost
        // the rest.
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 && roots.is_empty() {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(Error::config(
                "tls",
                format!(
                    "feature `native-roots` found no root certificate on this system ({why}); \
                     set SSL_CERT_FILE, enable `webpki-roots`, or call DbBuilder::tls"
                ),
            ));
        }
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("tls", format!("rustls rejected its defaults: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(BUILT_IN.get_or_init(|| config).clone()))
}
