//! An attacker's HTTP front for the cell's registry that tells clients apart: a compromised registry or
//! mirror answering the node's request for a tag with another manifest than it gives the admission controller.
//!
//! The front listens on a free `127.0.0.1` port and forwards every request to the cell's `docker-registry`
//! unchanged, except a `GET`/`HEAD` of `/v2/REPO/manifests/TAG` from a client whose `User-Agent` starts with
//! the node's (veritylab's own, as a runtime's would): that one is forwarded as a request for the decoy tag.
//! Requests by digest are never rewritten (a digest names its bytes; serving others is
//! `registry-blob-substitution`'s attack). One connection at a time, one request per connection (the front
//! answers `Connection: close`), every read bounded by a timeout and a size, and the accept loop by a
//! deadline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a front runs (a cell takes far less).
const LIFETIME: Duration = Duration::from_secs(600);
/// The longest wait for a client's or the registry's next bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head read.
const HEAD_LIMIT: usize = 64 << 10;
/// The largest response relayed.
const RESPONSE_LIMIT: u64 = 1 << 30;
/// How long the accept loop sleeps when no client is waiting.
const POLL: Duration = Duration::from_millis(5);

/// Which request the front answers differently.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    /// `/v2/REPO/manifests/TAG`: the path rewritten for the node.
    pub(crate) path: String,
    /// The path the node gets instead (the decoy tag's).
    pub(crate) decoy: String,
    /// The node's `User-Agent` prefix.
    pub(crate) node_agent: String,
}

/// A running front; dropping it stops it.
pub(crate) struct Front {
    port: u16,
    stop: Arc<AtomicBool>,
    rewritten: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    /// Starts a front for the registry at `upstream` (`127.0.0.1:PORT`).
    pub(crate) fn start(upstream: String, split: Split) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let rewritten = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, rewritten) = (Arc::clone(&stop), Arc::clone(&rewritten));
            std::thread::Builder::new()
                .name("registry-front".to_owned())
                .spawn(move || serve(&listener, &upstream, &split, &stop, &rewritten))?
        };
        Ok(Self {
            port,
            stop,
            rewritten,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`, where clients reach the front.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many requests were answered with the decoy.
    pub(crate) fn rewritten(&self) -> u64 {
        self.rewritten.load(Ordering::SeqCst)
    }

    /// Stops the front and waits for its thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: &TcpListener, upstream: &str, split: &Split, stop: &AtomicBool, rewritten: &AtomicU64) {
    let deadline = Instant::now() + LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((client, _)) => {
                // A failed exchange only fails that client's request; the client reports it.
                if let Ok(true) = relay(client, upstream, split) {
                    rewritten.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Relays one request and its response; `Ok(true)` when it was rewritten for the node.
fn relay(client: TcpStream, upstream: &str, split: &Split) -> io::Result<bool> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let (request_line, headers) = read_head(&mut reader)?;
    let mut parts = request_line.splitn(3, ' ');
    let (method, path, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let agent = header(&headers, "user-agent").unwrap_or_default();
    let for_node = matches!(method, "GET" | "HEAD") && path == split.path && agent.starts_with(&split.node_agent);
    let path = if for_node { split.decoy.as_str() } else { path };
    let length: u64 = header(&headers, "content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);

    let mut registry = TcpStream::connect(upstream)?;
    registry.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut head = format!("{method} {path} {version}\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("connection")) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    registry.write_all(head.as_bytes())?;
    io::copy(&mut (&mut reader).take(length), &mut registry)?;

    let mut answer = BufReader::new(registry);
    let (status_line, response_headers) = read_head(&mut answer)?;
    let mut client = client;
    let mut head = format!("{status_line}\r\n");
    for (name, value) in response_headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
    {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes())?;
    io::copy(&mut answer.take(RESPONSE_LIMIT), &mut client)?;
    client.flush()?;
    Ok(for_node)
}

/// Reads an HTTP head: the first line and the header fields, within [`HEAD_LIMIT`].
fn read_head(reader: &mut impl BufRead) -> io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    let mut headers = Vec::new();
    let mut read = 0usize;
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(HEAD_LIMIT as u64).read_line(&mut line)?;
        read += n;
        if n == 0 || read > HEAD_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated or oversized HTTP head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((first, headers));
        }
        if first.is_empty() {
            first = line.to_owned();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
