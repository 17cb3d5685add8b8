//! TLS for both ports, re-read on SIGHUP (SPEC section 7): each port holds a [`Reloadable`]
//! configuration that a new connection's handshake reads; [`reload_on_hangup`] reads the
//! certificate and key again on every SIGHUP and swaps them in whole. Connections already
//! open keep the configuration they were accepted with; a file that cannot be read or a
//! pair that does not match keeps the old configuration, with one log line.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// PEM files of a TLS certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS files make no configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A TLS file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    File {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("the TLS certificate file {} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// rustls refused the certificate and key.
    #[error("the TLS certificate and key do not make a usable pair: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration from `files`, with ring as the crypto provider, offering
/// `alpn` in that order.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::File {
            what: "certificate",
            path: files.cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::File {
        what: "key",
        path: files.key.clone(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A port's TLS configuration, swapped whole when the files are read again.
#[derive(Debug)]
pub struct Reloadable {
    files: TlsFiles,
    alpn: Vec<&'static [u8]>,
    config: ArcSwap<rustls::ServerConfig>,
}

impl Reloadable {
    /// Reads `files` for a port that offers `alpn`.
    pub fn new(files: TlsFiles, alpn: &[&'static [u8]]) -> Result<Reloadable, TlsError> {
        let config = server_config(&files, alpn)?;
        Ok(Reloadable {
            files,
            alpn: alpn.to_vec(),
            config: ArcSwap::from_pointee(config),
        })
    }

    /// The configuration a new connection's handshake uses.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config.load_full()
    }

    /// Reads the files again: the new configuration serves the connections accepted from
    /// now on; on an error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files, &self.alpn)?;
        self.config.store(Arc::new(config));
        Ok(())
    }
}

/// Reloads every configuration of `ports` on each SIGHUP, for as long as the runtime that
/// runs it lives; a SIGHUP without TLS is logged and changes nothing (it no longer ends the
/// process, as its default action would).
pub fn reload_on_hangup(ports: Vec<Arc<Reloadable>>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if ports.is_empty() {
                tracing::info!("SIGHUP: no TLS files to read again");
                continue;
            }
            // Both ports read the same files: one line for the lot.
            let failed = ports.iter().map(|port| port.reload()).find_map(Result::err);
            match failed {
                None => tracing::info!("SIGHUP: TLS certificate and key read again"),
                Some(e) => tracing::warn!(
                    error = %e,
                    "SIGHUP: TLS files not reloaded, the previous certificate stays in use"
                ),
            }
        }
    });
    Ok(())
}
