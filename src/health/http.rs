//! The HTTP side of probes: one `GET` over HTTP/1.1 on a fresh connection, reading only the
//! status line, optionally inside TLS verified against the bucket CA. Nothing else of HTTP is
//! needed to tell whether a service answers with the expected status, so nothing else is
//! implemented: no redirects, no bodies, no keep-alive.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::TlsConnector;

use super::HealthError;
use crate::certs::{CA_KV_KEY, CA_KV_NAMESPACE};

/// The most of a response read while looking for the end of its status line.
const STATUS_LINE_LIMIT: usize = 4096;

/// Why a request got no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum HttpError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("the connection failed: {0}")]
    Io(String),
    #[error("the answer is not HTTP: {0}")]
    NotHttp(String),
}

/// A TLS client that trusts only the bucket CA (`pem`), which signs the certificates maand
/// issues to jobs (they name the worker addresses).
pub(super) fn tls_connector(pem: &str) -> Result<TlsConnector, HealthError> {
    let invalid = |reason: String| HealthError::CaCertificate {
        namespace: CA_KV_NAMESPACE,
        key: CA_KV_KEY,
        reason,
    };
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| invalid(format!("not a PEM certificate ({e})")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki_types::CertificateDer::from(parsed.contents))
        .map_err(|e| invalid(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Sends `GET path` to `host:port` (inside TLS when `tls` is given) and returns the status.
/// The caller bounds the time.
pub(super) async fn get_status(
    host: &str,
    port: u16,
    path: &str,
    tls: Option<&TlsConnector>,
) -> Result<u16, HttpError> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| HttpError::Connect(e.to_string()))?;
    let request = request(host, port, path);
    match tls {
        None => exchange(stream, &request).await,
        Some(connector) => {
            let name = pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| HttpError::Tls(format!("{host:?} is not a server name: {e}")))?;
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| HttpError::Tls(e.to_string()))?;
            exchange(stream, &request).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<u16, HttpError> {
    let io = |e: std::io::Error| HttpError::Io(e.to_string());
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 512];
    loop {
        if let Some(end) = head.iter().position(|&b| b == b'\n') {
            return parse_status_line(&head[..end]);
        }
        if head.len() >= STATUS_LINE_LIMIT {
            return Err(HttpError::NotHttp(format!(
                "no status line in the first {STATUS_LINE_LIMIT} bytes"
            )));
        }
        let read = stream.read(&mut buffer).await.map_err(io)?;
        if read == 0 {
            return if head.is_empty() {
                Err(HttpError::Io("closed without answering".into()))
            } else {
                parse_status_line(&head)
            };
        }
        head.extend_from_slice(&buffer[..read]);
    }
}

/// The request bytes. `path` comes from a validated manifest (starts with `/`, one line);
/// bytes a request line cannot carry (spaces, non-ASCII) are percent-encoded.
fn request(host: &str, port: u16, path: &str) -> Vec<u8> {
    let mut target = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_graphic() {
            target.push(byte as char);
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: maand-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Reads `HTTP/1.x NNN reason` and returns `NNN`.
fn parse_status_line(line: &[u8]) -> Result<u16, HttpError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let shown = || text.chars().take(80).collect::<String>();
    let mut words = text.split(' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(HttpError::NotHttp(format!("{:?}", shown())));
    }
    words
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| HttpError::NotHttp(format!("{:?}", shown())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn the_request_names_the_host_and_closes_the_connection() {
        let text = String::from_utf8(request("127.9.0.1", 8080, "/a b/é?x=1")).unwrap();
        assert!(
            text.starts_with("GET /a%20b/%C3%A9?x=1 HTTP/1.1\r\nHost: 127.9.0.1:8080\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        let text = String::from_utf8(request("::1", 80, "/")).unwrap();
        assert!(text.contains("Host: [::1]:80\r\n"), "{text}");
    }

    #[test]
    fn status_lines_are_read_and_anything_else_is_refused() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404"), Ok(404));
        assert!(matches!(
            parse_status_line(b"SSH-2.0-OpenSSH_9.2"),
            Err(HttpError::NotHttp(_))
        ));
        assert!(matches!(
            parse_status_line(b"HTTP/1.1 2000 Huge"),
            Err(HttpError::NotHttp(_))
        ));
    }

    /// Serves one connection: reads the request head, answers with `answer`.
    async fn serve_once(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buffer = [0u8; 256];
            while !seen.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buffer).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
            }
            // Dribble the answer to exercise reassembly of the status line.
            for chunk in answer.chunks(3) {
                socket.write_all(chunk).await.unwrap();
                socket.flush().await.unwrap();
            }
            seen
        });
        (port, server)
    }

    #[tokio::test]
    async fn a_real_server_answer_gives_its_status() {
        let (port, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(get_status("127.0.0.1", port, "/ready", None).await, Ok(503));
        let seen = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(seen.starts_with("GET /ready HTTP/1.1\r\n"), "{seen}");
    }

    #[tokio::test]
    async fn a_server_that_is_not_http_is_named_as_such() {
        let (port, _server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let err = get_status("127.0.0.1", port, "/", None).await.unwrap_err();
        assert!(matches!(err, HttpError::NotHttp(_)), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = get_status("127.0.0.1", port, "/", None).await.unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err}");
    }

    #[test]
    fn a_connector_needs_a_real_certificate() {
        let Err(err) = tls_connector("not a certificate") else {
            panic!("a connector from garbage");
        };
        assert!(err.to_string().contains("maand build"), "{err}");
    }

    /// A CA certificate (PEM) and what signs with it.
    fn authority() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), rcgen::Issuer::new(params, key))
    }

    /// Serves HTTPS on 127.0.0.1 with a certificate for that address signed by `issuer`,
    /// answering 204 to every request.
    async fn https_server(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> u16 {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    continue;
                };
                let mut buffer = [0u8; 1024];
                let _ = tls.read(&mut buffer).await;
                let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                let _ = tls.shutdown().await;
            }
        });
        port
    }

    #[tokio::test]
    async fn https_is_verified_against_the_bucket_ca() {
        let (ca_pem, issuer) = authority();
        let port = https_server(&issuer).await;
        let trusted = tls_connector(&ca_pem).unwrap();
        assert_eq!(
            get_status("127.0.0.1", port, "/", Some(&trusted)).await,
            Ok(204)
        );
        let (other_pem, _) = authority();
        let stranger = tls_connector(&other_pem).unwrap();
        let err = get_status("127.0.0.1", port, "/", Some(&stranger))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Tls(_)), "{err}");
    }
}
