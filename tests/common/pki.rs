//! A private CA and a switchboard certificate it signed, as PEM files, for tests that run the
//! switchboard with TLS (made with rcgen; names may be DNS names or IP addresses).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A CA named after `label` and a certificate for `names` signed by it, written to `dir`
    /// as `<label>-ca.pem`, `<label>-cert.pem` and `<label>-key.pem`.
    pub fn new(dir: &Path, label: &str, names: &[&str]) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("dialtone test CA {label}"));
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        let p = Pki {
            ca: dir.join(format!("{label}-ca.pem")),
            cert: dir.join(format!("{label}-cert.pem")),
            key: dir.join(format!("{label}-key.pem")),
        };
        std::fs::write(&p.ca, ca.pem()).unwrap();
        std::fs::write(&p.cert, cert.pem()).unwrap();
        std::fs::write(&p.key, key.serialize_pem()).unwrap();
        p
    }

    /// `--tls-cert CERT --tls-key KEY` for `dialtone serve`.
    pub fn serve_args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}
