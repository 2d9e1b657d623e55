//! The control listeners: a Unix socket (mode 0600) speaking line-based JSON, and an optional
//! HTTP/1 port (loopback unless allowed otherwise) with the same commands plus `/metrics`.
//!
//! Both only parse requests and forward them as [`Request`]s to the controller; a malformed
//! request is answered with `{"ok":false,"error":...}` and counted in the metrics.

use super::{ask, failure, Command, ControlError, Request};
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Response, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};

/// Where the control listeners go.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    /// The Unix socket path (`None`: no socket).
    pub socket: Option<PathBuf>,
    /// The HTTP address (`None`: no HTTP listener).
    pub http: Option<SocketAddr>,
    /// Allow a non-loopback HTTP address.
    pub allow_remote: bool,
}

/// `/tmp/rowshift-<db>.<table>.sock` (characters other than letters, digits, `_`, `-` and `.`
/// become `_`).
pub fn default_socket_path(db: &str, table: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    PathBuf::from(format!("/tmp/rowshift-{}.{}.sock", clean(db), clean(table)))
}

/// Running listeners; dropping it stops them and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    socket: Option<PathBuf>,
    http: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlServer {
    /// The socket path, when listening on one.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The HTTP address actually bound (port 0 resolved), when listening.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bind the listeners (errors here stop the migration before it changes anything) and serve
/// them, forwarding commands to `requests`.
pub async fn start(
    config: &ServeConfig,
    requests: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
) -> Result<ControlServer, ControlError> {
    let mut server = ControlServer {
        socket: None,
        http: None,
        tasks: Vec::new(),
    };
    if let Some(addr) = config.http {
        if !addr.ip().is_loopback() && !config.allow_remote {
            return Err(ControlError::RemoteRefused { addr });
        }
    }
    if let Some(path) = &config.socket {
        let listener = bind_socket(path).await?;
        server.socket = Some(path.clone());
        info!(socket = %path.display(), "control socket listening (rowshift ctl --socket ...)");
        let (requests, metrics) = (requests.clone(), metrics.clone());
        server.tasks.push(tokio::spawn(
            serve_socket(listener, requests, metrics).instrument(info_span!("control_socket")),
        ));
    }
    if let Some(addr) = config.http {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ControlError::Http { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ControlError::Http { addr, source })?;
        server.http = Some(bound);
        info!(http = %bound, "control HTTP listening (GET /status, /metrics; POST /pause, ...)");
        server.tasks.push(tokio::spawn(
            serve_http(listener, requests, metrics).instrument(info_span!("control_http")),
        ));
    }
    Ok(server)
}

/// Bind the socket with mode 0600. A leftover socket file nobody listens on (a killed run) is
/// replaced; a live one is refused.
async fn bind_socket(path: &Path) -> Result<UnixListener, ControlError> {
    if path.as_os_str().len() > 107 {
        return Err(ControlError::SocketPathTooLong {
            path: path.to_path_buf(),
        });
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::SocketInUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Socket {
        path: path.to_path_buf(),
        source,
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ControlError::Socket {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

async fn serve_socket(
    listener: UnixListener,
    requests: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        let (requests, metrics) = (requests.clone(), metrics.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read.take(1 << 20)).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                let reply = match Command::from_json(&line) {
                    Ok(cmd) => ask(&requests, cmd).await,
                    Err(e) => {
                        metrics.error("control_request");
                        failure(&e.to_string())
                    }
                };
                let mut out = reply.to_string();
                out.push('\n');
                if write.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn serve_http(listener: TcpListener, requests: mpsc::Sender<Request>, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "control HTTP accept failed");
                continue;
            }
        };
        let (requests, metrics) = (requests.clone(), metrics.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let (requests, metrics) = (requests.clone(), metrics.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(handle_http(req, &requests, &metrics).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn json_response(v: Value) -> Response<Full<Bytes>> {
    let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    respond(status, "application/json", format!("{v}\n"))
}

async fn handle_http(
    req: hyper::Request<hyper::body::Incoming>,
    requests: &mpsc::Sender<Request>,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let query_arg = req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(k, "arg" | "value").then(|| v.replace("%3D", "=").replace("%2C", ","))
        })
    });
    let method = req.method().clone();
    if path == "metrics" && method == Method::GET {
        return respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        );
    }
    if path == "status" && method == Method::GET {
        return json_response(ask(requests, Command::Status).await);
    }
    if method != Method::POST {
        metrics.error("control_request");
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            format!(
                "{}\n",
                failure("use GET /status, GET /metrics, or POST /<command>")
            ),
        );
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            metrics.error("control_request");
            return json_response(failure(&format!("cannot read the request body: {e}")));
        }
    };
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let arg = if text.starts_with('{') {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => match v.get("arg").or_else(|| v.get("value")) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            },
            Err(e) => {
                metrics.error("control_request");
                return json_response(failure(&format!("the body is not JSON: {e}")));
            }
        }
    } else if text.is_empty() {
        query_arg
    } else {
        Some(text)
    };
    match Command::parse(&path, arg.as_deref()) {
        Ok(cmd) => json_response(ask(requests, cmd).await),
        Err(e) => {
            metrics.error("control_request");
            json_response(failure(&e.to_string()))
        }
    }
}
