//! A registry token service on 127.0.0.1 (distribution's token spec) for
//! a docker-registry started with `auth: token:`: it answers the OAuth2
//! refresh-token POST only for the right identity token and fields, the
//! OAuth2 password grant (if it takes one) and the GET with basic auth
//! only for the right user and password, each with a JWT signed by its
//! own certificate (made with openssl at start), which the registry
//! checks against that certificate as its root. It may rotate identity
//! tokens, as some services do. It records each request's verdict, never
//! the secrets.

use super::registry::checked_output;
use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const SERVICE: &str = "strata-test-registry";
pub const ISSUER: &str = "strata-test-issuer";

/// What the service accepts.
pub struct Secrets {
    pub identity_token: String,
    /// User and password for the GET flow and the password grant.
    pub basic: (String, String),
    /// Each refresh-token grant answers a new refresh token, and from
    /// then on only that one is taken.
    pub rotate: bool,
    /// How a password grant is answered.
    pub password_grant: PasswordGrant,
}

/// What the service does with an OAuth2 password grant (a POST with
/// `grant_type=password`).
#[derive(Clone, Copy, Debug)]
pub enum PasswordGrant {
    /// Takes it, answering the identity token as its refresh token.
    Taken,
    /// Refuses every such POST with this status, as a service that takes
    /// no POSTs (404, 405) or no password grant (400) does.
    Refused(u16),
}

/// One request as the service judged it: `POST refresh_token accepted`,
/// `GET basic refused`...
pub type Verdict = String;

pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    secrets: Arc<Mutex<Secrets>>,
    verdicts: Arc<Mutex<Vec<Verdict>>>,
    /// Form field names of every POST, in order.
    fields: Arc<Mutex<Vec<Vec<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    key: PathBuf,
    cert_der: Vec<u8>,
}

impl TokenServer {
    pub fn start(dir: &Path, secrets: Secrets) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        checked_output(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=strata-test-token"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
            "openssl req",
        );
        let cert_der = checked_output(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert),
            "openssl x509",
        );
        let signer = Signer { key, cert_der };
        let listener = TcpListener::bind("127.0.0.1:0").expect("a token server port");
        let port = listener.local_addr().unwrap().port();
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let fields = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let secrets = Arc::new(Mutex::new(secrets));
        let (s, v, f, st) = (
            secrets.clone(),
            verdicts.clone(),
            fields.clone(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &s, &signer, &v, &f);
                }
            }
        });
        TokenServer {
            port,
            cert,
            secrets,
            verdicts,
            fields,
            stop,
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The `auth:` block of a registry config that trusts this service.
    pub fn registry_auth_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        self.verdicts.lock().unwrap().clone()
    }

    /// The form field names of each POST.
    pub fn post_fields(&self) -> Vec<Vec<String>> {
        self.fields.lock().unwrap().clone()
    }

    /// The identity token the service takes now (rotated ones change).
    pub fn identity_token(&self) -> String {
        self.secrets.lock().unwrap().identity_token.clone()
    }

    pub fn clear(&self) {
        self.verdicts.lock().unwrap().clear();
        self.fields.lock().unwrap().clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request per connection (the answer closes it).
fn serve(
    conn: TcpStream,
    secrets: &Mutex<Secrets>,
    signer: &Signer,
    verdicts: &Mutex<Vec<Verdict>>,
    fields: &Mutex<Vec<Vec<String>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    let mut secrets = secrets.lock().unwrap();
    // A refresh token the answer hands out, and a status refusing the
    // request as unsupported.
    let mut refresh = None;
    let mut unsupported = None;
    let (verdict, scope) = match (method.as_str(), path) {
        ("POST", "/token") => {
            let form = parse_form(&String::from_utf8_lossy(&body));
            fields
                .lock()
                .unwrap()
                .push(form.iter().map(|(k, _)| k.clone()).collect());
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let common = header("content-type")
                .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
                && get("service") == Some(SERVICE)
                && get("client_id").is_some_and(|c| !c.is_empty());
            let scope = get("scope").unwrap_or("").to_string();
            match (get("grant_type"), secrets.password_grant) {
                (Some("password"), PasswordGrant::Refused(status)) => {
                    unsupported = Some(status);
                    ("POST password unsupported".to_string(), None)
                }
                (Some("password"), PasswordGrant::Taken) => {
                    let right = common
                        && get("username") == Some(secrets.basic.0.as_str())
                        && get("password") == Some(secrets.basic.1.as_str())
                        && get("access_type") == Some("offline");
                    if right {
                        refresh = Some(secrets.identity_token.clone());
                    }
                    (
                        format!("POST password {}", judged(right)),
                        right.then_some(scope),
                    )
                }
                (grant, _) => {
                    let right = common
                        && grant == Some("refresh_token")
                        && get("refresh_token") == Some(secrets.identity_token.as_str());
                    if right && secrets.rotate {
                        secrets.identity_token = format!("{}-r", secrets.identity_token);
                        refresh = Some(secrets.identity_token.clone());
                    }
                    (
                        format!("POST refresh_token {}", judged(right)),
                        right.then_some(scope),
                    )
                }
            }
        }
        ("GET", "/token") => {
            let form = parse_form(query);
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", secrets.basic.0, secrets.basic.1))
            );
            // Each `scope` parameter is one scope (the token spec repeats
            // the parameter for more): one with a space in it is refused.
            let scopes: Vec<&str> = form
                .iter()
                .filter(|(n, _)| n == "scope")
                .map(|(_, v)| v.as_str())
                .collect();
            let right = header("authorization").as_deref() == Some(expected.as_str())
                && get("service") == Some(SERVICE)
                && !scopes.iter().any(|one| one.contains(' '));
            (
                format!("GET basic {}", judged(right)),
                right.then(|| scopes.join(" ")),
            )
        }
        _ => (format!("{method} {path} refused"), None),
    };
    drop(secrets);
    verdicts.lock().unwrap().push(verdict);
    let (status, answer) = match (scope, unsupported) {
        (_, Some(status)) => (
            format!("{status} Unsupported"),
            r#"{"error":"unsupported_grant_type"}"#.to_string(),
        ),
        (Some(scope), None) => {
            let token = signer.jwt(&scope);
            let mut answer =
                serde_json::json!({"access_token": token, "token": token, "expires_in": 300});
            if let Some(refresh) = refresh {
                answer["refresh_token"] = refresh.into();
            }
            ("200 OK".to_string(), answer.to_string())
        }
        (None, None) => (
            "401 Unauthorized".to_string(),
            r#"{"error":"invalid_grant"}"#.to_string(),
        ),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    conn.flush()
}

fn judged(right: bool) -> &'static str {
    if right {
        "accepted"
    } else {
        "refused"
    }
}

/// `a=b&c=d`, percent- and plus-decoded.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Signer {
    /// A JWT granting `scope` (`repository:name:pull,push`, or several
    /// separated by spaces), signed RS256 with the certificate in `x5c`.
    fn jwt(&self, scope: &str) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let access: Vec<serde_json::Value> = scope
            .split(' ')
            .filter_map(|one| {
                let mut parts = one.split(':');
                let kind = parts.next()?;
                let actions = parts.next_back()?;
                let name = parts.collect::<Vec<_>>().join(":");
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": "tester",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now - 10,
            "jti": format!("jti-{now}-{}", rand_suffix()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())
            .unwrap();
        let signed = child.wait_with_output().unwrap();
        assert!(signed.status.success(), "openssl dgst -sign failed");
        format!("{signing_input}.{}", b64(&signed.stdout))
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}
