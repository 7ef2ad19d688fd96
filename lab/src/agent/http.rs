//! The agent's HTTP endpoint: `GET /metrics` (OpenMetrics text), `GET /healthz`, 404 for anything else, on a
//! thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Response};

use super::{AgentError, Metrics};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running server; [`Server::shutdown`] stops it.
pub(super) struct Server {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `metrics` until shut down.
    pub(super) fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, AgentError> {
        let server = tiny_http::Server::http(addr).map_err(|e| AgentError::Listen {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let response = match (request.method(), request.url()) {
                    (Method::Get, "/metrics") => {
                        Response::from_string(metrics.encode()).with_header(header(OPENMETRICS))
                    }
                    (Method::Get, "/healthz") => Response::from_string("ok\n").with_header(header("text/plain")),
                    _ => Response::from_string("not found\n")
                        .with_status_code(404)
                        .with_header(header("text/plain")),
                };
                // A client that hung up is its own problem.
                let _ = request.respond(response);
            }
        });
        Ok(Self {
            server,
            addr: bound,
            thread: Some(thread),
        })
    }

    /// The address bound (the port chosen when 0 was asked).
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests and waits for the serving thread.
    pub(super) fn shutdown(mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(content_type: &str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()).expect("a constant header is valid")
}
