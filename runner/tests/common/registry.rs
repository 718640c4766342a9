//! The real distribution registry (Debian's `docker-registry`) for tests:
//! one process on 127.0.0.1 at a free port with its own config and
//! storage, stopped by pid when dropped; skopeo pushes into it.

use sha2::{Digest as _, Sha256};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Runs `command` (`what` names it in the failure), failing the test
/// with its stderr unless it succeeds; its stdout.
pub fn checked_output(command: &mut Command, what: &str) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One registry process with its own config and storage, stopped by pid
/// when dropped (also when the test fails).
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// With htpasswd basic auth for `user`/`password`.
    pub fn start_with(login: Option<(&str, &str)>) -> Registry {
        Registry::start_configured(login, "error")
    }

    /// With this `auth:` block in its config (a token service's, say).
    pub fn start_with_auth_config(auth: &str) -> Registry {
        Registry::start_configured_with(None, "error", auth)
    }

    /// Logging every request (see `requests`).
    pub fn start_logging_requests() -> Registry {
        Registry::start_configured(None, "info")
    }

    /// How many `method` requests the registry answered to paths holding
    /// `path_part` (needs `start_logging_requests`).
    pub fn requests(&self, method: &str, path_part: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("response completed")
                    && l.contains(&format!("http.request.method={method} "))
                    && l.contains(path_part)
            })
            .count()
    }

    fn start_configured(login: Option<(&str, &str)>, log_level: &str) -> Registry {
        Registry::start_configured_with(login, log_level, "")
    }

    fn start_configured_with(login: Option<(&str, &str)>, log_level: &str, auth: &str) -> Registry {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: {log_level}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = login {
            let htpasswd = dir.path().join("htpasswd");
            let entry = checked_output(
                Command::new("htpasswd").args(["-Bbn", user, password]),
                "htpasswd (apache2-utils, installed by scripts/setup)",
            );
            std::fs::write(&htpasswd, entry).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        config.push_str(auth);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (installed by scripts/setup) starts");
        let mut registry = Registry { child, port, dir };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "registry not listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// skopeo copy of a docker-archive into `repo:tag`, with extra flags.
    pub fn push(&self, archive: &Path, name: &str, extra: &[&str]) {
        checked_output(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
                .args(extra)
                .arg(format!("docker-archive:{}", archive.display()))
                .arg(format!("docker://{}/{name}", self.host())),
            "skopeo copy (installed by scripts/setup)",
        );
    }

    /// The config bytes skopeo reads for `name`.
    pub fn raw_config(&self, name: &str, extra: &[&str]) -> Vec<u8> {
        checked_output(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", "--config", "--raw"])
                .args(extra)
                .arg(format!("docker://{}/{name}", self.host())),
            "skopeo inspect --config",
        )
    }

    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Registry {
    /// Pushes an OCI image blob by blob with a plain HTTP client, for
    /// layer forms skopeo will not write to a registry (uncompressed) or
    /// writes only through its blob cache (zstd).
    pub fn push_raw(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(&str, Vec<u8>)],
        config: &[u8],
    ) -> serde_json::Value {
        let base = format!("http://{}", self.host());
        let upload = |bytes: &[u8]| -> String {
            let digest = format!("sha256:{}", sha256_hex(bytes));
            let started = ureq::post(&format!("{base}/v2/{repo}/blobs/uploads/"))
                .send_empty()
                .expect("upload starts");
            let location = started.headers()["location"].to_str().unwrap().to_string();
            let url = if location.starts_with('/') {
                format!("{base}{location}")
            } else {
                location
            };
            let separator = if url.contains('?') { '&' } else { '?' };
            ureq::put(&format!("{url}{separator}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .send(bytes)
                .expect("blob upload");
            digest
        };
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(media_type, bytes)| {
                serde_json::json!({"mediaType": media_type, "digest": upload(bytes), "size": bytes.len()})
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": upload(config), "size": config.len()},
            "layers": layers,
        });
        self.put_manifest(
            repo,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
    }

    /// PUTs a manifest or index; gives its descriptor.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        document: &serde_json::Value,
    ) -> serde_json::Value {
        let bytes = serde_json::to_vec(document).unwrap();
        ureq::put(&format!("http://{}/v2/{repo}/manifests/{tag}", self.host()))
            .header("Content-Type", media_type)
            .send(&bytes)
            .expect("manifest upload");
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", sha256_hex(&bytes)),
            "size": bytes.len(),
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Our own child, by pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on, below Linux's ephemeral range (32768 and
/// up by default), which the kernel's own pick (`bind` to port 0) is
/// taken from: a port there can be handed out as the source port of any
/// outgoing connection meanwhile, and a connect to it while nothing
/// listens yet can even connect the socket to itself, which looks like a
/// listening registry (a CI run saw skopeo's ping reset).
pub fn free_port() -> u16 {
    use std::time::{SystemTime, UNIX_EPOCH};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    (0..COUNT)
        .map(|i| (FIRST + (seed.wrapping_add(i.wrapping_mul(7_919))) % COUNT) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}
