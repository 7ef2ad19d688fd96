//! A small blocking client for the OCI distribution API: manifests and blobs by digest, uploads of blobs
//! (monolithic) and manifests, with anonymous, basic and bearer-token auth, bounded retries and timeouts.
//!
//! It is written here over `ureq` rather than taken from `oci-client` because that crate needs an async
//! runtime (tokio + reqwest) for a handful of GETs; the client is the small part, the checks around it
//! (digest, size, media type, limits) are ours either way.

use std::io::Read;
use std::time::Duration;

use ureq::http::Method;

use super::auth::{self, Challenge, Credentials};
use super::digest::{Digest, HashingReader, VerifyError};
use super::reference::RegistryRef;
use verity_fuse::ErrorClass;

/// How a client talks to a registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Use `http://` (allowed only for loopback registries).
    pub plain_http: bool,
    /// Credentials for basic auth or token requests; `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// Attempts per request for connection errors, 429 and 5xx answers.
    pub attempts: u32,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest wait for the response head or for any read of a body.
    pub read_timeout: Duration,
    /// Pause before the second attempt (doubled for each further one).
    pub backoff: Duration,
    /// The `User-Agent` sent, when not veritylab's own ([`DEFAULT_USER_AGENT`]): how another client (an
    /// admission webhook, a runtime) presents itself to a registry.
    pub user_agent: Option<String>,
}

/// The `User-Agent` veritylab's client sends unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("veritylab/", env!("CARGO_PKG_VERSION"));

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            plain_http: false,
            credentials: None,
            attempts: 3,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(200),
            user_agent: None,
        }
    }
}

/// A registry request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `--plain-http` for a registry that is not on a loopback address.
    #[error("refusing plain HTTP to {host}: --plain-http is only allowed for loopback registries")]
    PlainHttpNotLoopback {
        /// The registry host.
        host: String,
    },
    /// The request did not get an answer (after all attempts).
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The last error.
        #[source]
        source: ureq::Error,
    },
    /// The registry does not have it.
    #[error("{url}: not found (404)")]
    NotFound {
        /// The URL.
        url: String,
    },
    /// The registry refused our credentials (or we had none to offer).
    #[error("{url}: unauthorized (401): {detail}")]
    Unauthorized {
        /// The URL.
        url: String,
        /// What we tried.
        detail: String,
    },
    /// Any other unexpected status (after all attempts for 429 and 5xx).
    #[error("{url}: unexpected HTTP status {status}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's own error codes and messages, when its answer had them.
        detail: Option<String>,
    },
    /// An upload could not proceed.
    #[error("upload to {url}: {reason}")]
    Upload {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Content that is not what was asked for.
    #[error("{url}: {source}")]
    Verify {
        /// The URL.
        url: String,
        /// What did not match.
        #[source]
        source: VerifyError,
    },
    /// A manifest larger than the limit.
    #[error("{url}: manifest larger than the limit of {limit} bytes")]
    ManifestTooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The registry's `Docker-Content-Digest` disagrees with the bytes it sent.
    #[error("{url}: Docker-Content-Digest says {header} but the content is {computed}")]
    ContentDigestHeader {
        /// The URL.
        url: String,
        /// The header's value.
        header: String,
        /// The digest of the bytes.
        computed: Digest,
    },
    /// The token endpoint's answer is unusable.
    #[error("token endpoint {url}: {reason}")]
    Token {
        /// The realm URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl RegistryError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::PlainHttpNotLoopback { .. } => ErrorClass::Usage,
            Self::Transport { .. } | Self::Status { .. } | Self::Upload { .. } | Self::Token { .. } => ErrorClass::Io,
            Self::NotFound { .. } => ErrorClass::BadInput,
            Self::Unauthorized { .. } => ErrorClass::NotTrusted,
            Self::Verify { .. } | Self::ContentDigestHeader { .. } => ErrorClass::VerificationFailed,
            Self::ManifestTooLarge { .. } => ErrorClass::BadInput,
        }
    }
}

/// A manifest fetched and checked.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The digest of the bytes (equal to the one asked for when fetched by digest).
    pub digest: Digest,
    /// The media type from `Content-Type` (or the document's own `mediaType` when the server sent none).
    pub media_type: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

/// A client for one repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    repository: String,
    options: ClientOptions,
    authorization: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `reference`'s repository.
    pub fn new(reference: &RegistryRef, options: ClientOptions) -> Result<Self, RegistryError> {
        if options.plain_http && !reference.is_loopback() {
            return Err(RegistryError::PlainHttpNotLoopback {
                host: reference.host.clone(),
            });
        }
        let scheme = if options.plain_http { "http" } else { "https" };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!options.plain_http)
            .max_redirects(5)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .user_agent(options.user_agent.as_deref().unwrap_or(DEFAULT_USER_AGENT))
            .build()
            .into();
        Ok(Self {
            agent,
            base: format!("{scheme}://{}/v2/{}", reference.api_host(), reference.repository),
            repository: reference.repository.clone(),
            options,
            authorization: None,
        })
    }

    /// Whether this client uses plain HTTP.
    pub fn plain_http(&self) -> bool {
        self.options.plain_http
    }

    /// Fetches a manifest by tag or digest, at most `limit` bytes. A digest reference is checked against the
    /// bytes; a `Docker-Content-Digest` header, when present, must agree with them too.
    pub fn manifest(&mut self, reference: &str, accept: &str, limit: u64) -> Result<FetchedManifest, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let mut response = self.get(&url, accept)?;
        let content_type = header_value(&response, "content-type").map(str::to_owned);
        let digest_header = header_value(&response, "docker-content-digest").map(str::to_owned);
        let bytes = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|source| match source {
                ureq::Error::BodyExceedsLimit(_) => RegistryError::ManifestTooLarge {
                    url: url.clone(),
                    limit,
                },
                source => RegistryError::Transport {
                    url: url.clone(),
                    source,
                },
            })?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::Verify {
                url,
                source: VerifyError::DigestMismatch {
                    expected,
                    found: digest,
                },
            });
        }
        check_digest_header(&url, digest_header.as_deref(), &digest)?;
        let media_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_owned())
            .filter(|ct| !ct.is_empty() && ct != "application/json" && ct != "application/octet-stream")
            .or_else(|| super::manifest::embedded_media_type(&bytes))
            .unwrap_or_default();
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Opens a blob for streaming; the caller checks digest and size as it reads.
    pub fn blob(&mut self, digest: &Digest) -> Result<impl Read + use<>, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let response = self.get(&url, "*/*")?;
        Ok(response.into_body().into_reader())
    }

    /// Whether the repository has the blob (`HEAD /v2/NAME/blobs/DIGEST`).
    pub fn blob_exists(&mut self, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let response = self.send(Call::new(Method::HEAD, url).ok(&[200, 404]))?;
        Ok(response.status() == 200)
    }

    /// Uploads a blob of `size` bytes read from `reader`, unless the repository has it already: one
    /// `POST /v2/NAME/blobs/uploads/`, then a monolithic `PUT` of the whole blob to the returned location
    /// with `?digest=`. The bytes are hashed on the way; a reader that does not deliver exactly `size` bytes
    /// hashing to `digest` is an error whatever the registry says. The body is a stream and is sent once:
    /// the `POST` settles authentication (with a `pull,push` token when the registry wants one), and the
    /// `PUT` is not retried.
    pub fn put_blob(&mut self, digest: &Digest, size: u64, reader: impl Read) -> Result<(), RegistryError> {
        if self.blob_exists(digest)? {
            return Ok(());
        }
        let url = format!("{}/blobs/uploads/", self.base);
        let response = self.send(Call::new(Method::POST, url.clone()).ok(&[202]))?;
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Upload {
                url: url.clone(),
                reason: "the upload answer has no Location header".to_owned(),
            })?;
        let location = self.absolute(&url, location)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{separator}digest={}", digest.to_string().replace(':', "%3A"));
        let mut body = ExactReader {
            inner: HashingReader::new(reader, size),
            size,
        };
        let sent = self.send(
            Call::new(Method::PUT, put_url)
                .header("Content-Type", "application/octet-stream")
                .stream(&mut body, size)
                .ok(&[201]),
        );
        // Our own check first: a reader that lied is our error, not the registry's.
        let checked = body.inner.finish(digest, size).map_err(|e| RegistryError::Upload {
            url: url.clone(),
            reason: format!("reading the blob to upload: {e}"),
        })?;
        checked.map_err(|source| RegistryError::Verify {
            url: url.clone(),
            source,
        })?;
        let response = sent?;
        check_digest_header(&url, header_value(&response, "docker-content-digest"), digest)
    }

    /// Uploads a manifest (or index) under `reference`, a tag or the manifest's digest, with `media_type`
    /// as its `Content-Type`; returns the digest of `bytes`. A digest reference must be the digest of
    /// `bytes`, and a `Docker-Content-Digest` in the answer must agree with it. Everything the manifest
    /// refers to must be in the repository first (registries refuse a manifest with missing blobs).
    pub fn put_manifest(&mut self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let url = format!("{}/manifests/{reference}", self.base);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(RegistryError::Verify {
                url,
                source: VerifyError::DigestMismatch {
                    expected,
                    found: digest,
                },
            });
        }
        let response = self.send(
            Call::new(Method::PUT, url.clone())
                .header("Content-Type", media_type)
                .bytes(bytes)
                .ok(&[201]),
        )?;
        check_digest_header(&url, header_value(&response, "docker-content-digest"), &digest)?;
        Ok(digest)
    }

    /// Resolves an upload `Location` (absolute, or a path on this registry). An absolute one must stay on
    /// this registry's scheme and host: the upload carries our credentials.
    fn absolute(&self, url: &str, location: &str) -> Result<String, RegistryError> {
        let origin_end = self.base.find("/v2/").unwrap_or(self.base.len());
        let origin = &self.base[..origin_end];
        if location.starts_with('/') {
            return Ok(format!("{origin}{location}"));
        }
        if location.strip_prefix(origin).is_some_and(|rest| rest.starts_with('/')) {
            return Ok(location.to_owned());
        }
        Err(RegistryError::Upload {
            url: url.to_owned(),
            reason: format!("the upload location {location:?} is not on {origin}"),
        })
    }

    /// GETs `url`; only 200 comes back.
    fn get(&mut self, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        self.send(Call::new(Method::GET, url.to_owned()).header("Accept", accept))
    }

    /// Sends one request, answering one auth challenge and retrying transient failures (not for a streamed
    /// body, which cannot be replayed); only the statuses in `call.ok` come back, the rest are errors.
    fn send(&mut self, mut call: Call<'_>) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let url = call.url.clone();
        let replayable = !matches!(call.body, Payload::Stream(..));
        let mut attempt = 0;
        let mut challenged = false;
        loop {
            attempt += 1;
            let mut request = ureq::http::Request::builder().method(call.method.clone()).uri(&url);
            for (name, value) in &call.headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(value) = &self.authorization {
                request = request.header("Authorization", value.as_str());
            }
            let http_error = |e| RegistryError::Transport {
                url: url.clone(),
                source: ureq::Error::Http(e),
            };
            let result = match &mut call.body {
                Payload::Empty => self.agent.run(request.body(()).map_err(http_error)?),
                Payload::Bytes(bytes) => self.agent.run(request.body(*bytes).map_err(http_error)?),
                Payload::Stream(reader, size) => {
                    let request = request.header("Content-Length", *size);
                    self.agent.run(
                        request
                            .body(ureq::SendBody::from_reader(&mut **reader))
                            .map_err(http_error)?,
                    )
                }
            };
            let retry = replayable && attempt < self.options.attempts.max(1);
            let response = match result {
                Ok(response) => response,
                Err(source) if retry && transient(&source) => {
                    self.pause(attempt);
                    continue;
                }
                Err(source) => return Err(RegistryError::Transport { url, source }),
            };
            let status = response.status().as_u16();
            match status {
                status if call.ok.contains(&status) => return Ok(response),
                401 if !challenged && replayable => {
                    challenged = true;
                    attempt -= 1;
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .and_then(auth::parse_challenge);
                    let actions = if matches!(call.method, Method::GET | Method::HEAD) {
                        "pull"
                    } else {
                        "pull,push"
                    };
                    self.authorization = Some(self.answer(&url, challenge, actions)?);
                }
                401 => {
                    return Err(RegistryError::Unauthorized {
                        url,
                        detail: match &self.options.credentials {
                            Some(c) => format!("credentials of {:?} were refused", c.username),
                            None => "anonymous access was refused and no credentials were given".to_owned(),
                        },
                    });
                }
                404 => return Err(RegistryError::NotFound { url }),
                429 | 500..=599 if retry => self.pause(attempt),
                status => {
                    let mut response = response;
                    let detail = response
                        .body_mut()
                        .with_config()
                        .limit(4096)
                        .read_to_string()
                        .ok()
                        .and_then(|text| error_summary(&text));
                    return Err(RegistryError::Status { url, status, detail });
                }
            }
        }
    }

    fn pause(&self, attempt: u32) {
        std::thread::sleep(self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1)));
    }

    /// The `Authorization` value answering a challenge; `actions` (`pull` or `pull,push`) make the token
    /// scope when the challenge names none.
    fn answer(&self, url: &str, challenge: Option<Challenge>, actions: &str) -> Result<String, RegistryError> {
        let unauthorized = |detail: &str| RegistryError::Unauthorized {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        match challenge {
            None => Err(unauthorized("no WWW-Authenticate challenge we understand")),
            Some(Challenge::Basic) => match &self.options.credentials {
                Some(creds) => Ok(creds.basic_header()),
                None => Err(unauthorized(
                    "the registry wants basic auth and no credentials were given",
                )),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:{actions}", self.repository));
                self.token(&realm, service.as_deref(), &scope)
                    .map(|token| format!("Bearer {token}"))
            }
        }
    }

    /// Asks the token endpoint for a token (with basic credentials when we have them).
    fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, RegistryError> {
        let token_error = |reason: String| RegistryError::Token {
            url: realm.to_owned(),
            reason,
        };
        let plain_realm = realm.starts_with("http://");
        if !(realm.starts_with("https://") || (plain_realm && self.options.plain_http)) {
            return Err(token_error("the realm must be an https:// URL".to_owned()));
        }
        let mut request = self.agent.get(realm).query("scope", scope);
        if let Some(service) = service {
            request = request.query("service", service);
        }
        if let Some(creds) = &self.options.credentials {
            request = request.header("Authorization", creds.basic_header());
        }
        let mut response = request.call().map_err(|source| RegistryError::Transport {
            url: realm.to_owned(),
            source,
        })?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::Unauthorized {
                    url: realm.to_owned(),
                    detail: "the token endpoint refused the request".to_owned(),
                });
            }
            status => return Err(token_error(format!("HTTP status {status}"))),
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| token_error(e.to_string()))?;
        auth::token_from_json(&bytes).ok_or_else(|| token_error("no token in the answer".to_owned()))
    }
}

/// What to send in one request.
enum Payload<'a> {
    /// No body.
    Empty,
    /// Bytes in memory (replayable).
    Bytes(&'a [u8]),
    /// A stream of the given length, sent once.
    Stream(&'a mut dyn Read, u64),
}

/// One request and the statuses that count as success.
struct Call<'a> {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Payload<'a>,
    ok: &'static [u16],
}

impl<'a> Call<'a> {
    fn new(method: Method, url: String) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: Payload::Empty,
            ok: &[200],
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn ok(mut self, statuses: &'static [u16]) -> Self {
        self.ok = statuses;
        self
    }

    fn bytes(mut self, bytes: &'a [u8]) -> Self {
        self.body = Payload::Bytes(bytes);
        self
    }

    fn stream(mut self, reader: &'a mut dyn Read, size: u64) -> Self {
        self.body = Payload::Stream(reader, size);
        self
    }
}

/// A body that fails rather than end short: a stream ending before its announced length would leave the
/// registry waiting for the rest, so the request is aborted instead (a longer one fails in
/// [`HashingReader`]).
struct ExactReader<R> {
    inner: HashingReader<R>,
    size: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inner.bytes_read() < self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the blob ended after {} of {} bytes",
                    self.inner.bytes_read(),
                    self.size
                ),
            ));
        }
        Ok(n)
    }
}

/// A header of `response` as text, if present and readable.
fn header_value<'r>(response: &'r ureq::http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A `Docker-Content-Digest` answer header, when present, must name `digest`. Only a sha256 header can be
/// compared; registries may announce other algorithms.
fn check_digest_header(url: &str, header: Option<&str>, digest: &Digest) -> Result<(), RegistryError> {
    match header {
        Some(h) if h.starts_with("sha256:") && h.parse::<Digest>().ok() != Some(*digest) => {
            Err(RegistryError::ContentDigestHeader {
                url: url.to_owned(),
                header: h.to_owned(),
                computed: *digest,
            })
        }
        _ => Ok(()),
    }
}

/// The `code: message` pairs of a distribution-API error body (`{"errors":[{"code","message"}]}`).
fn error_summary(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let errors: Errors = serde_json::from_str(body).ok()?;
    let parts: Vec<String> = errors
        .errors
        .iter()
        .take(4)
        .map(|e| {
            let code = e.code.as_deref().unwrap_or("ERROR");
            let message: String = e.message.as_deref().unwrap_or("").chars().take(200).collect();
            format!("{code}: {message}")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Errors worth another attempt: the connection, not the content.
fn transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}
