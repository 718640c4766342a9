//! One registry's HTTP API (OCI distribution v1.1) over `ureq`: the
//! scheme (TLS, or plain HTTP where docker allows it), the auth handshake
//! and the error bodies registries send.
//!
//! Auth follows docker: `GET /v2/` first; a 401 names the scheme in
//! `WWW-Authenticate`. `Basic` sends the stored credentials with every
//! request; `Bearer realm=...,service=...` fetches a token from the realm
//! for each scope (`repository:<path>:pull`), with the credentials if
//! there are any, anonymously otherwise, and keeps it for later requests
//! of that scope.
//!
//! Stored credentials that are an identity token (an OAuth2 refresh
//! token, see `credentials`) are traded as distribution's token spec
//! says ("OAuth2 token"): a form POST to the realm with
//! `grant_type=refresh_token`, the token, service, scope and client id.
//! Without one, the token comes from a GET with basic auth. When the
//! answer carries a new `refresh_token` (a service that rotates them), it
//! replaces the one held, and the one stored where it was found (see
//! [`Client::for_repository`]).
//!
//! `login` asks for an identity token for the password
//! ([`Client::asking_for_identity_token`]): first by the OAuth2 password
//! grant, a POST with `grant_type=password` and `access_type=offline`;
//! a service that refuses that POST (404/405 where it takes no POSTs,
//! 400/401 where it takes no password grant) is asked by the GET with
//! basic auth and `offline_token=true`, which is how docker's login asks
//! (containerd falls back from the POST the same way). No token,
//! identity or bearer, nor a password, is ever printed or logged.

use super::credentials::{self, Credentials};
use super::steady::Steady;
use super::transport::{self, INSECURE_REGISTRIES_ENV};
use anyhow::{anyhow, bail, Context, Result};
use layerdb::escape::escape;
use layerdb::reference::RemoteReference;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// Largest manifest, index or token response read (docker's limit too).
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Redirects one GET or HEAD follows (ureq's default, and Go's).
const MAX_REDIRECTS: usize = 10;

/// How the registry wants requests authorized, learnt from a 401.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Sends one request with the `Authorization` value given, if any.
type SendFn<'a> = dyn FnMut(Option<&str>) -> Result<Response<Body>, ureq::Error> + 'a;

/// Keeps a new refresh token (the second argument) in place of the old
/// one where the credentials were found.
type TokenKeeper = dyn Fn(&str, &str) -> Result<()> + Send + Sync;

/// A request body, sent with its length.
pub enum Payload {
    Bytes(Vec<u8>),
}

pub struct Client {
    agent: ureq::Agent,
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    /// What authorizes: a refresh token the token service hands out
    /// replaces the one here. Held while a token is fetched, so that one
    /// refresh token is not sent twice (a rotating service takes it once).
    credentials: Mutex<Option<Credentials>>,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens per scope (several scopes, space-separated, are one).
    tokens: Mutex<HashMap<String, String>>,
    /// Ask the token service for an identity token (docker's
    /// `OfflineAccess`): what `login` does with a password.
    offline: bool,
    /// Saves a refreshed identity token where it was stored.
    keeper: Option<Box<TokenKeeper>>,
}

/// A response that was not a success, in the registry's words:
/// `manifest unknown: manifest unknown` from its `errors` list, else the
/// HTTP status.
#[derive(Debug)]
pub struct StatusError {
    /// The first error code the registry named (`MANIFEST_UNKNOWN`).
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

impl Client {
    /// Connects to the registry API at `host` (docker's ping of `/v2/`),
    /// learning its scheme and auth challenge.
    pub fn connect(host: &str, credentials: Option<Credentials>) -> Result<Client> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            // A registry that stops reading an upload.
            .timeout_per_write(Some(Duration::from_secs(120)))
            // Headers sent a line a minute stay under the per-read
            // timeout; this one is long enough for a registry that stores
            // a big upload before it answers.
            .timeout_recv_response(Some(Duration::from_secs(300)))
            // Redirects are followed by `Client::followed`: ureq reads a
            // 3xx answer's body to its end before it follows, outside
            // any deadline of ours, so one endless (or one byte a
            // minute) held a pull, and `gc` behind it, for good.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let plain_allowed = transport::plain_http_allowed(host);
        let mut client = Client {
            agent,
            base: format!("https://{host}"),
            credentials: Mutex::new(credentials),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            offline: false,
            keeper: None,
        };
        match client.ping() {
            Ok(()) => Ok(client),
            // docker's rule for insecure registries: TLS first, then HTTP.
            Err(_) if plain_allowed => {
                client.base = format!("http://{host}");
                client.ping()?;
                Ok(client)
            }
            Err(e) => Err(e),
        }
    }

    /// Connects to the registry of `reference` with the credentials stored
    /// for its repository; a refresh token the token service hands out
    /// replaces the stored one, in the file or helper it came from.
    pub fn for_repository(reference: &RemoteReference) -> Result<Client> {
        let (domain, path) = (reference.domain.clone(), reference.path.clone());
        let found = credentials::lookup(&domain, Some(&path))?;
        let mut client = Client::connect(reference.api_host(), found)?;
        client.keeper = Some(Box::new(move |old: &str, new: &str| {
            credentials::replace_identity_token(&domain, Some(&path), old, new)
        }));
        Ok(client)
    }

    /// Asks the token service for an identity token in exchange for the
    /// password, as `docker login` does (the module doc says how); see
    /// [`Client::credentials`].
    pub fn asking_for_identity_token(mut self) -> Client {
        self.offline = true;
        self
    }

    /// The credentials as they stand: an identity token the token service
    /// handed out in place of the password or of an older token.
    pub fn credentials(&self) -> Option<Credentials> {
        self.credentials.lock().expect("not poisoned").clone()
    }

    /// `GET /v2/`: reachable, and which auth it wants.
    fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport_error("Get", &url, e))?;
        let response = self.followed("Get", &url, response, &[])?;
        if response.status() == 401 {
            *self.challenge.lock().expect("not poisoned") = parse_challenge(&response);
        }
        Ok(())
    }

    /// Checks the credentials: `GET /v2/` with them must not be refused.
    pub fn check_login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self.get("/v2/", "", &[])?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => bail!("login attempt to {url} failed with status: 401 Unauthorized"),
            status => bail!("login attempt to {url} failed with status: {status}"),
        }
    }

    /// A GET with auth for `scope`. Any status comes back; see
    /// [`Client::expect_ok`].
    pub fn get(&self, path: &str, scope: &str, accept: &[&str]) -> Result<Response<Body>> {
        let url = self.url(path);
        let response = self.with_auth("Get", &url, scope, &mut |auth| {
            let mut request = self.agent.get(&url);
            if !accept.is_empty() {
                request = request.header("Accept", accept.join(", "));
            }
            if let Some(value) = auth {
                request = request.header("Authorization", value);
            }
            request.call()
        })?;
        self.followed("Get", &url, response, accept)
    }

    /// A HEAD with auth for `scope`.
    pub fn head(&self, path: &str, scope: &str) -> Result<Response<Body>> {
        let url = self.url(path);
        let response = self.with_auth("Head", &url, scope, &mut |auth| {
            let mut request = self.agent.head(&url);
            if let Some(value) = auth {
                request = request.header("Authorization", value);
            }
            request.call()
        })?;
        self.followed("Head", &url, response, &[])
    }

    /// `response`, the answer to a GET or HEAD of `url`, or else the
    /// answer at the end of the redirects it starts. Each 3xx body is
    /// dropped unread, and each hop goes without `Authorization` (as
    /// ureq sent them): a blob a registry sends to its storage comes
    /// from a signed URL, and the digest check does not depend on where.
    fn followed(
        &self,
        method: &str,
        url: &str,
        mut response: Response<Body>,
        accept: &[&str],
    ) -> Result<Response<Body>> {
        let mut url = url.to_string();
        let mut hops = 0;
        loop {
            let status = response.status();
            if !status.is_redirection() || status == 304 {
                return Ok(response);
            }
            let Some(location) = response.headers().get("Location") else {
                return Ok(response);
            };
            if hops == MAX_REDIRECTS {
                bail!(
                    "{method} \"{}\": more than {MAX_REDIRECTS} redirects",
                    escape(without_query(&url))
                );
            }
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            url = resolve_reference(&url, &location).with_context(|| {
                format!(
                    "the registry redirected to a location that is no http or https URL: {}",
                    escape(&location)
                )
            })?;
            drop(response);
            hops += 1;
            let mut request = match method {
                "Head" => self.agent.head(&url),
                _ => self.agent.get(&url),
            };
            if !accept.is_empty() {
                request = request.header("Accept", accept.join(", "));
            }
            response = request
                .call()
                .map_err(|e| transport_error(method, &url, e))?;
        }
    }

    /// A POST or PUT of `body` with auth for `scope`; `url` may be a path
    /// or the absolute URL an upload's `Location` gave.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        content_type: &str,
        body: &mut dyn FnMut() -> std::io::Result<Payload>,
    ) -> Result<Response<Body>> {
        let url = self.url(url);
        let shown = if method == "PUT" { "Put" } else { "Post" };
        self.with_auth(shown, &url, scope, &mut |auth| {
            let mut request = if method == "PUT" {
                self.agent.put(&url)
            } else {
                self.agent.post(&url)
            };
            request = request.header("Content-Type", content_type);
            if let Some(value) = auth {
                request = request.header("Authorization", value);
            }
            match body().map_err(ureq::Error::Io)? {
                Payload::Bytes(bytes) => request.send(bytes),
            }
        })
    }

    /// A PATCH of one chunk of an upload: `bytes` at offset `start`
    /// (`Content-Range: start-end`, end inclusive, as the distribution
    /// spec has it).
    pub fn patch_chunk(
        &self,
        url: &str,
        scope: &str,
        start: u64,
        bytes: &[u8],
    ) -> Result<Response<Body>> {
        let url = self.url(url);
        let end = start + bytes.len() as u64 - 1;
        self.with_auth("Patch", &url, scope, &mut |auth| {
            let mut request = self
                .agent
                .patch(&url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{start}-{end}"));
            if let Some(value) = auth {
                request = request.header("Authorization", value);
            }
            request.send(bytes)
        })
    }

    /// Whether `url` (a path, or an absolute URL) goes to this registry.
    pub fn owns_url(&self, url: &str) -> bool {
        (url.starts_with('/') && !url.starts_with("//"))
            || url
                .strip_prefix(&self.base)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// A `Location` the registry answered a request to `sent_to` (a path
    /// of this registry or an absolute URL) with, as an absolute URL:
    /// resolved against the request's URL as RFC 3986 says, so `//host/p`
    /// names another host (which then gets no credentials), not the path
    /// `//host/p` of this one.
    pub fn location(&self, sent_to: &str, location: &str) -> Result<String> {
        resolve_reference(&self.url(sent_to), location).with_context(|| {
            format!(
                "the registry gave a location that is no http or https URL: {}",
                escape(location)
            )
        })
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// Sends with the `Authorization` for `scope`, once more after a 401
    /// that says how to authorize.
    fn with_auth(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        send: &mut SendFn<'_>,
    ) -> Result<Response<Body>> {
        // Credentials go to this registry only, as docker keys them by
        // host: an upload `Location` may name another host (a storage
        // front), which gets the request without them, and a challenge
        // from it is not taken (its realm would get the password or the
        // identity token next).
        let own = self.owns_url(url);
        let mut retried = false;
        loop {
            let auth = if own {
                self.authorization(scope)?
            } else {
                None
            };
            let response = send(auth.as_deref()).map_err(|e| transport_error(method, url, e))?;
            if !own || response.status() != 401 || retried {
                return Ok(response);
            }
            retried = true;
            let Some(challenge) = parse_challenge(&response) else {
                return Ok(response);
            };
            // A token for this scope was refused (expired, or too narrow):
            // fetch a new one.
            self.tokens.lock().expect("not poisoned").remove(scope);
            *self.challenge.lock().expect("not poisoned") = Some(challenge);
        }
    }

    /// The response if it is a success, else its error as the registry
    /// put it.
    pub fn expect_ok(response: Response<Body>) -> Result<Response<Body>> {
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(response).into())
    }

    /// Reads a small response body (a manifest, a config, a token).
    pub fn read_document(response: Response<Body>) -> Result<Vec<u8>> {
        let limited = response
            .into_body()
            .into_with_config()
            .limit(MAX_DOCUMENT_BYTES);
        let mut bytes = Vec::new();
        Steady::document(limited.reader())
            .read_to_end(&mut bytes)
            .context("reading the registry's answer")?;
        Ok(bytes)
    }

    /// A blob's body, as it streams; it fails if it stops coming.
    pub fn body(response: Response<Body>) -> Steady<impl Read> {
        Steady::new(response.into_body().into_reader())
    }

    /// A document's body (an image config) read through the caller's own
    /// size bound: it fails if it stops coming, or takes over the
    /// documents' deadline in all.
    pub fn document_body(response: Response<Body>) -> Steady<impl Read> {
        Steady::document(response.into_body().into_reader())
    }

    /// The `Authorization` header for a scope, fetching a token if the
    /// registry wants bearer tokens and none is kept for it.
    fn authorization(&self, scope: &str) -> Result<Option<String>> {
        let challenge = self.challenge.lock().expect("not poisoned").clone();
        match challenge {
            None => Ok(None),
            // An identity token is for a token service, not a password.
            Some(Challenge::Basic) => Ok(self
                .credentials()
                .filter(|c| c.identity_token().is_none())
                .map(|c| format!("Basic {}", c.basic()))),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(token) = self.tokens.lock().expect("not poisoned").get(scope) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope)?;
                self.tokens
                    .lock()
                    .expect("not poisoned")
                    .insert(scope.to_string(), token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String> {
        let mut held = self.credentials.lock().expect("not poisoned");
        if held.is_some() && !secret_may_go_to(realm) {
            bail!(
                "the registry's token service {realm} is plain HTTP: credentials go only over TLS, \
                 or plain HTTP to a registry allowed it (localhost, {INSECURE_REGISTRIES_ENV})"
            );
        }
        let grant = match held.as_ref() {
            Some(c) => match c.identity_token() {
                Some(identity) => self.exchange_identity_token(realm, service, scope, identity)?,
                None if self.offline => self.password_grant(realm, service, scope, c)?,
                None => self.basic_token(realm, service, scope, Some(c))?,
            },
            None => self.basic_token(realm, service, scope, None)?,
        };
        if let Some(refresh) = grant.refresh_token {
            self.adopt_refresh_token(&mut held, refresh);
        }
        Ok(grant.token)
    }

    /// A new refresh token replaces the one held (and, with a keeper, the
    /// one stored): a service that rotates them takes the old one no more.
    fn adopt_refresh_token(&self, held: &mut Option<Credentials>, refresh: String) {
        let old = held
            .as_ref()
            .and_then(Credentials::identity_token)
            .map(str::to_string);
        if old.as_deref() == Some(refresh.as_str()) {
            return;
        }
        *held = Some(Credentials {
            username: credentials::IDENTITY_TOKEN_USER.to_string(),
            password: refresh.clone(),
        });
        if let (Some(keeper), Some(old)) = (&self.keeper, old) {
            // The pull or push goes on with the new token; only the next
            // run would find the old one refused.
            if let Err(e) = keeper(&old, &refresh) {
                log::warn!("cannot keep the identity token the token service renewed: {e:#}");
            }
        }
    }

    /// The token by GET, with basic auth if there are credentials. Asked
    /// for an identity token, it asks as docker's login does
    /// (`offline_token`), and keeps a `refresh_token` the answer has.
    fn basic_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Grant> {
        let mut request = self.agent.get(realm);
        if let Some(service) = service {
            request = request.query("service", service);
        }
        // Several scopes (a cross-repository mount's) go as one `scope`
        // each, as docker asks; the OAuth2 POST sends them space-separated.
        for one in scope.split_whitespace() {
            request = request.query("scope", one);
        }
        if self.offline {
            request = request
                .query("offline_token", "true")
                .query("client_id", CLIENT_ID);
        }
        if let Some(c) = credentials {
            request = request
                .query("account", &c.username)
                .header("Authorization", format!("Basic {}", c.basic()));
        }
        let response = request
            .call()
            .map_err(|e| transport_error("Get", realm, e))?;
        let response = self.followed("Get", realm, response, &[])?;
        if response.status() == 401 {
            bail!("unauthorized: incorrect username or password");
        }
        let grant = grant_of(realm, Self::expect_ok(response)?)?;
        Ok(Grant {
            refresh_token: grant.refresh_token.filter(|_| self.offline),
            ..grant
        })
    }

    /// The OAuth2 password grant, asking for a refresh token
    /// (`access_type=offline`); the password goes in the form body. A
    /// service that refuses it (404/405: no POSTs; 400/401: no password
    /// grant, or a wrong password) is asked by the GET, whose answer then
    /// decides (containerd's fallback, and docker's only way).
    fn password_grant(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<Grant> {
        let grant = [
            ("grant_type", "password"),
            ("username", credentials.username.as_str()),
            ("password", credentials.password.as_str()),
            ("access_type", "offline"),
        ];
        let response = self.post_oauth2(realm, service, scope, &grant)?;
        if matches!(response.status().as_u16(), 400 | 401 | 403 | 404 | 405) {
            log::info!(
                "{realm} refused the OAuth2 password grant (HTTP {}): asking by GET",
                response.status().as_u16()
            );
            return self.basic_token(realm, service, scope, Some(credentials));
        }
        grant_of(realm, Self::expect_ok(response)?)
    }

    /// The OAuth2 refresh-token grant: the identity token goes in the
    /// form body, never in a URL.
    fn exchange_identity_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        identity: &str,
    ) -> Result<Grant> {
        let grant = [("grant_type", "refresh_token"), ("refresh_token", identity)];
        let response = self.post_oauth2(realm, service, scope, &grant)?;
        let status = response.status().as_u16();
        if matches!(status, 400 | 401 | 403) {
            bail!("unauthorized: {realm} refused the stored identity token (HTTP {status}): log in again");
        }
        grant_of(realm, Self::expect_ok(response)?)
    }

    /// An OAuth2 token request of distribution's token spec: a form POST
    /// to the realm with the `grant` fields, the client id, the service
    /// and the scope. Secrets go in the body, never in the URL.
    fn post_oauth2(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        grant: &[(&str, &str)],
    ) -> Result<Response<Body>> {
        let mut form = grant.to_vec();
        form.push(("client_id", CLIENT_ID));
        if let Some(service) = service {
            form.push(("service", service));
        }
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        self.agent
            .post(realm)
            .send_form(form)
            .map_err(|e| transport_error("Post", realm, e))
    }
}

/// A token service's answer: the bearer token, and a refresh token when
/// it hands one out.
struct Grant {
    token: String,
    refresh_token: Option<String>,
}

/// The client id the OAuth2 grant names (docker sends `docker`).
const CLIENT_ID: &str = "strata";

/// The bearer token of a token service's answer (`token`, or OAuth2's
/// `access_token`) and its `refresh_token`, if any.
fn grant_of(realm: &str, response: Response<Body>) -> Result<Grant> {
    let body = Client::read_document(response)?;
    #[derive(serde::Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
        refresh_token: Option<String>,
    }
    let parsed: Token = serde_json::from_slice(&body)
        .with_context(|| format!("{realm}: the token service's answer is not JSON"))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("{realm}: the token service gave no token"))?;
    Ok(Grant {
        token,
        refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
    })
}

/// One line for a request that got no HTTP answer, in docker's shape:
/// `Get "http://127.0.0.1:5000/v2/": connection refused`. The URL's query
/// is left out: an upload's carries the registry's state (or a signed
/// grant), long and of no use to the reader.
/// `url` without its query, which may carry an account or a token
/// service's parameters: what an error line shows of a URL.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

fn transport_error(method: &str, url: &str, error: ureq::Error) -> anyhow::Error {
    let url = without_query(url);
    let cause = match &error {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    };
    anyhow!("{method} \"{url}\": {cause}")
}

/// The registry's `errors` list as one line, docker's errcode format
/// (`manifest unknown: manifest unknown`).
pub fn status_error(response: Response<Body>) -> StatusError {
    let status = response.status().as_u16();
    let body = Client::read_document(response).unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(parsed) if !parsed.errors.is_empty() => {
            let first = &parsed.errors[0];
            // The registry's words reach the user's terminal: control
            // characters are shown, never obeyed.
            let code_words = escape(&first.code.replace('_', " ").to_lowercase());
            let message = if first.message.is_empty() {
                code_words
            } else {
                format!("{code_words}: {}", escape(&first.message))
            };
            StatusError {
                code: Some(first.code.clone()),
                message,
            }
        }
        // A HEAD's answer has no body: docker's words for the statuses
        // that need the user to act.
        _ => StatusError {
            code: None,
            message: match status {
                401 => "unauthorized: authentication required".to_string(),
                403 => "denied: requested access to the resource is denied".to_string(),
                _ => format!("unexpected HTTP status {status}"),
            },
        },
    }
}

/// `WWW-Authenticate: Bearer realm="...",service="...",scope="..."`.
fn parse_challenge(response: &Response<Body>) -> Option<Challenge> {
    let header = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| !v.is_empty())?;
    challenge_of(header)
}

/// Whether a password or token may be sent to `url`: over TLS, or over
/// plain HTTP where the registry itself may use it. A registry names its
/// token service, and docker sends credentials to any; a TLS registry
/// naming `http://elsewhere/` would have them sent in the clear.
fn secret_may_go_to(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            transport::plain_http_allowed(&format!("{host}{port}"))
        }
        _ => false,
    }
}

fn challenge_of(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = auth_params(params);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key=value` pairs; values may be quoted with `\` escapes.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// `reference` resolved against the absolute URL `base` (RFC 3986
/// section 5.2), without its fragment (requests carry none); `None` if
/// either names a scheme other than http or https.
fn resolve_reference(base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or("");
    let (scheme, rest) = base.split_once("://")?;
    let authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &base[..scheme.len() + 3 + authority];
    let base_path = rest[authority..].split(['?', '#']).next().unwrap_or("");
    let web = |s: &str| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https");
    if !web(scheme) {
        return None;
    }
    // A colon before the first `/`, `?` or `#` ends a scheme: a relative
    // path cannot have one in its first segment.
    let first = reference.find(['/', '?', '#']).unwrap_or(reference.len());
    if let Some(colon) = reference[..first].find(':') {
        return (web(&reference[..colon]) && reference[colon + 1..].starts_with("//"))
            .then(|| reference.to_string());
    }
    if reference.starts_with("//") {
        return Some(format!("{scheme}:{reference}"));
    }
    let (path, query) = match reference.find('?') {
        Some(at) => reference.split_at(at),
        None => (reference, ""),
    };
    let merged = if path.starts_with('/') {
        path.to_string()
    } else if path.is_empty() {
        // `?query` alone keeps the request's path.
        base_path.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{path}", if dir.is_empty() { "/" } else { dir })
    };
    Some(format!("{origin}{}{query}", without_dot_segments(&merged)))
}

/// An absolute path with its `.` and `..` segments applied (RFC 3986
/// section 5.2.4).
fn without_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    kept.pop();
                }
                // `/a/..` is `/`, a directory: the trailing slash stays.
                if last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_resolved_against_the_request_url() {
        let base = "https://reg.example:5000/v2/a/b/blobs/uploads/?x=1";
        let resolve = |r| resolve_reference(base, r);
        let same = "https://reg.example:5000/v2/a/b/blobs/uploads/u1?_state=s";
        assert_eq!(resolve(same).as_deref(), Some(same));
        assert_eq!(resolve("u1?_state=s#f").as_deref(), Some(same));
        assert_eq!(
            resolve("/v2/a/b/blobs/uploads/u1?_state=s").as_deref(),
            Some(same)
        );
        assert_eq!(resolve("u1?_state=s").as_deref(), Some(same));
        assert_eq!(
            resolve("//other.example/up/u1").as_deref(),
            Some("https://other.example/up/u1")
        );
        assert_eq!(
            resolve("HTTP://other.example/u").as_deref(),
            Some("HTTP://other.example/u")
        );
        assert_eq!(
            resolve("../../x/./y").as_deref(),
            Some("https://reg.example:5000/v2/a/b/x/y")
        );
        assert_eq!(
            resolve("/../..").as_deref(),
            Some("https://reg.example:5000/")
        );
        assert_eq!(
            resolve("?_state=t").as_deref(),
            Some("https://reg.example:5000/v2/a/b/blobs/uploads/?_state=t")
        );
        assert_eq!(
            resolve_reference("http://h:1", "u").as_deref(),
            Some("http://h:1/u")
        );
        for refused in ["file:///etc/passwd", "ftp://h/x", "javascript:x", "http:/x"] {
            assert_eq!(resolve(refused), None, "{refused}");
        }
        assert_eq!(resolve_reference("file:///x", "/y"), None);
    }

    #[test]
    fn credentials_go_to_a_token_service_over_tls_or_to_a_loopback_one() {
        assert!(secret_may_go_to("https://auth.docker.io/token"));
        assert!(secret_may_go_to("http://127.0.0.1:5001/token"));
        assert!(secret_may_go_to("http://localhost/token"));
        assert!(secret_may_go_to("http://[::1]:80/token"));
        assert!(!secret_may_go_to("http://auth.example.com/token"));
        assert!(!secret_may_go_to("http://127.0.0.1:1@example.com/token"));
        assert!(!secret_may_go_to("file:///etc/passwd"));
        assert!(!secret_may_go_to("not a url"));
    }

    #[test]
    fn bearer_challenges_give_realm_and_service() {
        let c = challenge_of(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            challenge_of(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(challenge_of("Negotiate"), None);
        assert_eq!(challenge_of("Bearer service=x"), None);
    }

    /// A one-thread HTTP server on 127.0.0.1 answering every request with
    /// `answer`; the requests' heads go to the returned channel.
    fn serve(answer: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if !head.starts_with(b"GET") {
                    continue; // a TLS hello: dropped, so the client falls back to HTTP
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    #[test]
    fn another_host_gets_no_credentials_and_its_challenge_is_not_taken() {
        let (registry, _) = serve(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\n\r\n",
        );
        let (foreign, heads) = serve(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:9/token\"\r\nContent-Length: 0\r\n\r\n",
        );
        let credentials = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        let client = Client::connect(&format!("127.0.0.1:{registry}"), Some(credentials)).unwrap();
        let response = client
            .get(
                &format!("http://127.0.0.1:{foreign}/upload"),
                "repository:r:push",
                &[],
            )
            .unwrap();
        assert_eq!(response.status(), 401);
        let head = heads.recv().unwrap();
        assert!(!head.contains("authorization"), "{head}");
        assert_eq!(*client.challenge.lock().unwrap(), Some(Challenge::Basic));
    }

    #[test]
    fn auth_params_take_quoted_and_bare_values() {
        let p = auth_params(r#"realm="a,b\"c", service=reg , scope="x:y:pull,push""#);
        assert_eq!(p["realm"], "a,b\"c");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "x:y:pull,push");
    }
}
