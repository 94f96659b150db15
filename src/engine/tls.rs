//! `wss://` for the clients: the rustls config (the system's roots plus an optional CA file, ring
//! provider), the words for a connection that failed for a reason the user can fix, and whether
//! a switchboard URL is unencrypted off this machine (the TUI shows it).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite;

/// The TLS config for a switchboard URL: `None` for `ws://` (unless a CA file is given, which is
/// then checked all the same, so a wrong path is an error at start and not a surprise later).
pub fn client_config_for(
    server: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    if is_wss(server) || ca_file.is_some() {
        client_config(ca_file).map(Some)
    } else {
        Ok(None)
    }
}

/// The system's root certificates plus those in `ca_file` (PEM).
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("system root certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("{added} system root certificates ({ignored} unusable)");
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            bail!(
                "CA file {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                path.display()
            );
        }
        for (i, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!(
                    "CA file {}: certificate {} cannot be used: {e}",
                    path.display(),
                    i + 1
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn is_wss(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
}

/// The host part of a ws:// or wss:// URL (IPv6 literals without their brackets).
fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    authority.split(':').next().filter(|h| !h.is_empty())
}

/// `ws://` to a host that is not this machine: tokens and calls cross the network in clear.
pub fn is_unencrypted_remote(url: &str) -> bool {
    let plain = url
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("ws://"));
    if !plain {
        return false;
    }
    match host_of(url) {
        Some(h) if h.eq_ignore_ascii_case("localhost") => false,
        Some(h) => !h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Words for a failed connection attempt when the user has to act (TLS trust, a name mismatch,
/// a refusal by the server); `None` when it is the network or a switchboard that is not there,
/// which retrying may cure.
pub fn failure_message(e: &tungstenite::Error, url: &str) -> Option<String> {
    use tungstenite::Error;
    use tungstenite::error::TlsError;
    let host = host_of(url).unwrap_or(url);
    match e {
        Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(|tls| describe_tls(tls, host)),
        Error::Tls(TlsError::Rustls(tls)) => Some(describe_tls(tls, host)),
        Error::Tls(TlsError::InvalidDnsName) => Some(format!(
            "{host:?} is not a name a TLS certificate can be checked against"
        )),
        Error::Tls(other) => Some(format!("TLS with the switchboard failed: {other}")),
        Error::Http(resp) => {
            let body: String = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(200)
                        .collect()
                })
                .unwrap_or_default();
            let mut m = format!(
                "the switchboard refused the WebSocket: HTTP {}",
                resp.status()
            );
            if !body.is_empty() {
                m.push_str(&format!(" ({body})"));
            }
            Some(m)
        }
        _ => None,
    }
}

fn describe_tls(e: &rustls::Error, host: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "the switchboard's certificate is not trusted: \
                 UnknownIssuer (pass --ca FILE to trust a private CA)"
                .to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the switchboard's certificate is not valid for {host}: NotValidForName ({c})"
                )
            }
            other => format!("the switchboard's certificate is not accepted: {other}"),
        },
        rustls::Error::InvalidMessage(_) => format!(
            "TLS with the switchboard failed: {e} (does it serve plain ws://? then use a ws:// URL)"
        ),
        other => format!("TLS with the switchboard failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencrypted_remote_is_plain_ws_off_this_machine() {
        for yes in [
            "ws://192.0.2.7:7450",
            "ws://switchboard.example:7450/",
            "WS://0.0.0.0:7450",
            "ws://user@host.example",
            "ws://[2001:db8::1]:7450",
        ] {
            assert!(is_unencrypted_remote(yes), "{yes}");
        }
        for no in [
            "ws://127.0.0.1:7450",
            "ws://127.8.9.10:7450",
            "ws://localhost:7450",
            "ws://LOCALHOST",
            "ws://[::1]:7450",
            "wss://192.0.2.7:7450",
            "wss://switchboard.example",
        ] {
            assert!(!is_unencrypted_remote(no), "{no}");
        }
    }

    #[test]
    fn tls_failures_are_put_in_words() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        let m = failure_message(&tungstenite::Error::Io(io), "wss://localhost:1").unwrap();
        assert!(m.contains("not trusted") && m.contains("--ca"), "{m}");
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, name);
        let m = failure_message(&tungstenite::Error::Io(io), "wss://127.0.0.1:1/").unwrap();
        assert!(m.contains("not valid for 127.0.0.1"), "{m}");
        // A plain network failure is for retrying, not for the user.
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            failure_message(&tungstenite::Error::Io(refused), "wss://h"),
            None
        );
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("dialtone-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let missing = dir.join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        assert!(
            client_config_for("ws://127.0.0.1:1", None)
                .unwrap()
                .is_none()
        );
        assert!(
            client_config_for("wss://127.0.0.1:1", None)
                .unwrap()
                .is_some()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
