//! How surge reaches a secured etcd: TLS to its client port (the CA that signed etcd's
//! certificate, and this node's certificate where etcd asks clients for one), and a user whose
//! password buys a token (`/v3/auth/authenticate`) that goes with every call. The token is
//! kept and bought again when etcd says it is no longer valid: etcd's simple tokens expire
//! after `--auth-token-ttl` and are known only to the member that issued them.

use std::sync::Arc;

/// A user of etcd's authentication and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS and credentials for etcd; the default is plain HTTP without authentication.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// Speak TLS to every endpoint with this client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Authenticate as this user.
    pub credentials: Option<Credentials>,
}

impl EtcdAccess {
    /// How it reads in a log line: `"tls+auth(surge)"`, `"tls"`, `"plain"`.
    pub fn describe(&self) -> String {
        let transport = if self.tls.is_some() { "tls" } else { "plain" };
        match &self.credentials {
            Some(c) => format!("{transport}+auth({})", c.user),
            None => transport.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let c = Credentials {
            user: "surge".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("surge") && !shown.contains("hunter2"),
            "{shown}"
        );
        let access = EtcdAccess {
            tls: None,
            credentials: Some(c),
        };
        assert_eq!(access.describe(), "plain+auth(surge)");
        assert_eq!(EtcdAccess::default().describe(), "plain");
    }
}
