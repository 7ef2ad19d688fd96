//! A small blocking client for the OCI distribution API: manifests and blobs by digest, with anonymous,
//! basic and bearer-token auth, bounded retries and timeouts.
//!
//! It is written here over `ureq` rather than taken from `oci-client` because that crate needs an async
//! runtime (tokio + reqwest) for a handful of GETs; the client is the small part, the checks around it
//! (digest, size, media type, limits) are ours either way.

use std::io::Read;
use std::time::Duration;

use super::auth::{self, Challenge, Credentials};
use super::digest::{Digest, VerifyError};
use super::reference::RegistryRef;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            plain_http: false,
            credentials: None,
            attempts: 3,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(200),
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
    #[error("{url}: unexpected HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
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
            .user_agent(concat!("veritylab/", env!("CARGO_PKG_VERSION")))
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
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let digest_header = header("docker-content-digest");
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
        // Only a sha256 header can be compared; registries may announce other algorithms.
        if let Some(h) = digest_header
            && h.starts_with("sha256:")
            && h.parse::<Digest>().ok() != Some(digest)
        {
            return Err(RegistryError::ContentDigestHeader {
                url,
                header: h,
                computed: digest,
            });
        }
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

    /// GETs `url`, answering one auth challenge and retrying transient failures; only 200 comes back.
    fn get(&mut self, url: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let mut attempt = 0;
        let mut challenged = false;
        loop {
            attempt += 1;
            let mut request = self.agent.get(url).header("Accept", accept);
            if let Some(value) = &self.authorization {
                request = request.header("Authorization", value);
            }
            let retry = attempt < self.options.attempts.max(1);
            let response = match request.call() {
                Ok(response) => response,
                Err(source) if retry && transient(&source) => {
                    self.pause(attempt);
                    continue;
                }
                Err(source) => {
                    return Err(RegistryError::Transport {
                        url: url.to_owned(),
                        source,
                    });
                }
            };
            let status = response.status().as_u16();
            match status {
                200 => return Ok(response),
                401 if !challenged => {
                    challenged = true;
                    attempt -= 1;
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .and_then(auth::parse_challenge);
                    self.authorization = Some(self.answer(url, challenge)?);
                }
                401 => {
                    return Err(RegistryError::Unauthorized {
                        url: url.to_owned(),
                        detail: match &self.options.credentials {
                            Some(c) => format!("credentials of {:?} were refused", c.username),
                            None => "anonymous access was refused and no credentials were given".to_owned(),
                        },
                    });
                }
                404 => return Err(RegistryError::NotFound { url: url.to_owned() }),
                429 | 500..=599 if retry => self.pause(attempt),
                status => {
                    return Err(RegistryError::Status {
                        url: url.to_owned(),
                        status,
                    });
                }
            }
        }
    }

    fn pause(&self, attempt: u32) {
        std::thread::sleep(self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1)));
    }

    /// The `Authorization` value answering a challenge.
    fn answer(&self, url: &str, challenge: Option<Challenge>) -> Result<String, RegistryError> {
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
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                self.token(&realm, service.as_deref(), &scope)
                    .map(|token| format!("Bearer {token}"))
            }
        }
    }

    /// Asks the token endpoint for a pull token (with basic credentials when we have them).
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

/// Errors worth another attempt: the connection, not the content.
fn transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}
