//! Certificates for the TLS tests: a CA, and a certificate for 127.0.0.1 it signed, made
//! with rcgen and written as PEM files.

use std::path::Path;

/// PEM file paths.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A new CA and a certificate for 127.0.0.1 it signed, written into `dir` as
/// `{name}-ca.pem`, `{name}-cert.pem` and `{name}-key.pem`.
pub fn pki(dir: &Path, name: &str) -> Pki {
    pki_with_client(dir, name).0
}

/// The same, and a client certificate and key the CA signed with no CommonName, written as
/// `{name}-client-cert.pem` and `{name}-client-key.pem`: etcd's gateway refuses a client
/// certificate that has one when it asks clients for certificates.
pub fn pki_with_client(dir: &Path, name: &str) -> (Pki, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    // Names of their own: OpenSSL (the Python client) takes a certificate whose issuer is
    // its own subject for a self-signed one.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("surge test CA {name}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(vec!["surge".to_string()]).unwrap();
    client_params.distinguished_name = rcgen::DistinguishedName::new();
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let pki = Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
    };
    let client = (
        write("client-cert.pem", client.pem()),
        write("client-key.pem", client_key.serialize_pem()),
    );
    (pki, client)
}
