//! The HTTP client every HTTP emitter (`influxdb`, `otlp`, `remote_write`) sends with: ureq,
//! every status an answer (not an error), no redirects (a write is never replayed elsewhere),
//! one timeout for the whole request, `badger/<version>` as user agent, TLS verified
//! against the platform's trust store or the given certificates, and names resolved by
//! `badger_api::http_client::Resolver` (no thread per request).

use std::sync::Arc;

/// An agent for one emitter; `ca`: the certificates to trust instead of the platform's.
pub(crate) fn agent(timeout: std::time::Duration, ca: Option<&Vec<ureq::tls::Certificate<'static>>>) -> ureq::Agent {
    let roots = match ca {
        Some(certs) => ureq::tls::RootCerts::Specific(Arc::new(certs.clone())),
        None => ureq::tls::RootCerts::PlatformVerifier,
    };
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("badger/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build();
    badger_api::http_client::agent(config)
}
