//! The server side of TLS for the HTTP port (`admin.tls_cert`, `admin.tls_key`) and the
//! client port (`gateway.tls_cert`, `gateway.tls_key`): the certificate chain and key read
//! from PEM files at start, a rustls server config built once. With it the port speaks TLS
//! only, so admin tokens, `/metrics` and orders never cross the network in the clear.
//! And the client side for etcd (`coordinator.tls_ca`, `tls_cert`, `tls_key`).

use std::path::Path;
use std::sync::Arc;

use super::ServerConfig;
use crate::error::{Result, ServerError};

/// A server config from PEM files; `keys` names the config keys in errors.
pub fn server_config(cert: &Path, key: &Path, keys: &str) -> Result<Arc<rustls::ServerConfig>> {
    let bad = |why: String| ServerError::config(keys, why);
    let chain = replicator::tls::pem_chain(cert).map_err(bad)?;
    let key = replicator::tls::pem_key(key).map_err(bad)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            bad(format!(
                "the certificate and the key do not go together: {e}"
            ))
        })?;
    Ok(Arc::new(config))
}

/// A client config trusting the CAs in `ca`, showing `identity` (certificate chain, key
/// files) to servers that ask; `keys` names the config keys in errors.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    keys: &str,
) -> Result<Arc<rustls::ClientConfig>> {
    let bad = |why: String| ServerError::config(keys, why);
    let roots = replicator::tls::pem_roots(ca).map_err(bad)?;
    let identity = match identity {
        None => None,
        Some((cert, key)) => Some((
            replicator::tls::pem_chain(cert).map_err(bad)?,
            replicator::tls::pem_key(key).map_err(bad)?,
        )),
    };
    replicator::tls::client_config(Arc::new(roots), identity).map_err(bad)
}

impl ServerConfig {
    /// The client port's TLS, if configured (the files are read and checked here).
    pub fn client_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        if self.gateway.tls_cert.is_empty() {
            return Ok(None);
        }
        crate::config::tls::server_config(
            std::path::Path::new(&self.gateway.tls_cert),
            std::path::Path::new(&self.gateway.tls_key),
            "gateway.tls_cert, gateway.tls_key",
        )
        .map(Some)
    }

    /// How to reach etcd (`[coordinator]`): TLS and credentials where configured, the files
    /// read and checked here.
    pub fn etcd_access(&self) -> Result<coordinator::EtcdAccess> {
        let c = &self.coordinator;
        let tls = match c.tls_ca.is_empty() {
            true => None,
            false => Some(crate::config::tls::client_config(
                std::path::Path::new(&c.tls_ca),
                (!c.tls_cert.is_empty()).then(|| {
                    (
                        std::path::Path::new(&c.tls_cert),
                        std::path::Path::new(&c.tls_key),
                    )
                }),
                "coordinator.tls_ca, coordinator.tls_cert, coordinator.tls_key",
            )?),
        };
        let credentials = match c.username.is_empty() {
            true => None,
            false => {
                let text = std::fs::read_to_string(&c.password_file).map_err(|e| {
                    ServerError::config(
                        "coordinator.password_file",
                        format!("{}: {e}", c.password_file),
                    )
                })?;
                let password = text.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    return Err(ServerError::config(
                        "coordinator.password_file",
                        format!(
                            "{}: empty; it holds the password of {:?}",
                            c.password_file, c.username
                        ),
                    ));
                }
                Some(coordinator::Credentials {
                    user: c.username.clone(),
                    password,
                })
            }
        };
        Ok(coordinator::EtcdAccess { tls, credentials })
    }

    /// The HTTP port's TLS, if configured (the files are read and checked here).
    pub fn http_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        if self.admin.tls_cert.is_empty() {
            return Ok(None);
        }
        crate::config::tls::server_config(
            std::path::Path::new(&self.admin.tls_cert),
            std::path::Path::new(&self.admin.tls_key),
            "admin.tls_cert, admin.tls_key",
        )
        .map(Some)
    }
}
