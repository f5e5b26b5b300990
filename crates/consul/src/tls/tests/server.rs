//! A throwaway CA and loopback servers for the TLS tests: an HTTPS server answering every
//! request `200 true` (or `403` to a token other than `right`), optionally requiring a client
//! certificate, and a plain-HTTP one.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A CA in a temporary directory, issuing leaves into it.
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    leaves: std::cell::Cell<usize>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            leaves: std::cell::Cell::new(0),
        }
    }

    pub fn ca_path(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// A leaf for `names` (DNS names or IP addresses): its certificate and key files.
    pub fn leaf_files(&self, names: &[&str]) -> (String, String) {
        let n = self.leaves.get() + 1;
        self.leaves.set(n);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let path = |what: &str| self.dir.path().join(format!("leaf-{n}.{what}.pem"));
        std::fs::write(path("cert"), cert.pem()).unwrap();
        std::fs::write(path("key"), key.serialize_pem()).unwrap();
        (display(&path("cert")), display(&path("key")))
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// An HTTPS server on loopback, stopped on drop.
pub struct Server {
    /// `https://127.0.0.1:PORT`.
    pub addr: String,
    /// The SNI of each handshake that completed, in order.
    pub snis: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves with a leaf of `pki` for `names`; with `client_ca`, requires a client
    /// certificate chaining to it.
    pub async fn start(pki: &Pki, names: &[&str], client_ca: Option<&Pki>) -> Server {
        let (cert, key) = pki.leaf_files(names);
        let files = beamline_tls::ServerFiles {
            cert: beamline_tls::PemFile::new("--tls-cert", cert),
            key: beamline_tls::PemFile::new("--tls-key", key),
            client_ca: client_ca.map(|ca| beamline_tls::PemFile::new("--client-ca", ca.ca_path())),
        };
        let config = beamline_tls::server_config(&files, &[]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("https://{}", listener.local_addr().unwrap());
        let snis = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&snis);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let sni = tls.get_ref().1.server_name().map(str::to_string);
                        seen.lock().unwrap().push(sni);
                        answer(tls).await;
                    }
                });
            }
        });
        Server { addr, snis, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain-HTTP listener that answers a TLS client hello as HTTP: its `host:port`.
pub async fn plain_http() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    addr
}

/// Reads one request head and answers it, then closes.
async fn answer(mut io: impl AsyncRead + AsyncWrite + Unpin) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("x-consul-token:"))
        .map(str::trim);
    let response: &[u8] = match token {
        Some(t) if t != "right" => {
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\nConnection: close\r\n\r\nPermission denied"
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    };
    let _ = io.write_all(response).await;
    let _ = io.shutdown().await;
}
