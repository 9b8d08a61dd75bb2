//! What payledger's outbound HTTP clients share (the payout gateway's and event delivery's): their TLS
//! configuration and the text of a failed request. No I/O of its own.

use std::sync::Arc;

/// The rustls configuration: the ring provider, and the system's root certificates for https (none for plain
/// http: the connector then never starts TLS, and a missing certificate bundle must not stop a plain-http
/// setup). The provider is passed rather than installed process-wide, so nothing else in the process changes
/// and the build never needs aws-lc-rs (rustls' default, which wants cmake).
pub fn config(https: bool) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    if https {
        use hyper_rustls::ConfigBuilderExt;
        let builder =
            builder.with_native_roots().map_err(|error| format!("loading the system's root certificates: {error}"))?;
        Ok(builder.with_no_client_auth())
    } else {
        Ok(builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
    }
}

/// An error and its sources: hyper's own message ("client error (Connect)") does not say whether the name was
/// refused, the connection refused or timed out, or the TLS handshake failed.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
