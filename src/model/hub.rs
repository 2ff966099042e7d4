//! The Hugging Face hub's file API and cache, as `huggingface_hub` and `transformers`
//! use them: `HF_ENDPOINT` (mirrors), `HF_HOME` / `HF_HUB_CACHE` (the cache they
//! share), `HF_TOKEN`, `HF_HUB_OFFLINE`. Files land in the cache's own layout
//! (`models--org--name/blobs/<etag>`, `snapshots/<commit>/<file>` linking to the blob,
//! `refs/main`), so a model either tool downloaded is used in place.
//!
//! hf-hub 0.4 is not used: it renames an unverified download into the cache, reads
//! neither `HF_HUB_CACHE`, `HF_TOKEN` nor `HF_HUB_OFFLINE`, and needs `Content-Range`
//! from every mirror. Here a download goes to `<etag>.incomplete` (continued on a retry),
//! is checked against its size and, for LFS files, the SHA-256 the ETag carries, and only
//! then becomes a blob.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::progress::{Progress, Task};

/// The revision fetched and resolved.
const REVISION: &str = "main";
/// Redirects followed (the hub answers renamed repositories and LFS files with one).
const MAX_REDIRECTS: usize = 5;

/// Where the hub is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: String,
    /// The hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache: PathBuf,
    /// `HF_TOKEN`, else the token file `huggingface-cli login` writes.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: the cache only.
    pub offline: bool,
}

impl HubSettings {
    /// The settings the environment gives, read as `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            crate::util::read_text(&token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|name| {
                var(name).is_some_and(|v| {
                    matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
                })
            });
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            offline,
        }
    }

    /// A repository's folder in the cache (`models--org--name`).
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The cached snapshot folder of `repo` at `main`, when `refs/main` names one.
    pub fn snapshot(&self, repo: &str) -> Option<PathBuf> {
        let dir = self.repo_dir(repo);
        let commit = std::fs::read_to_string(dir.join("refs").join(REVISION)).ok()?;
        let snapshot = dir.join("snapshots").join(commit.trim());
        snapshot.is_dir().then_some(snapshot)
    }

    /// A file of `repo` in the cache, without the network.
    pub fn cached_file(&self, repo: &str, file: &str) -> Option<PathBuf> {
        self.snapshot(repo)
            .map(|s| s.join(file))
            .filter(|p| p.is_file())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "repository {repo} does not exist on {endpoint} (or it is private or gated: set HF_TOKEN to a token that may read it)"
    )]
    RepoNotFound { repo: String, endpoint: String },
    #[error("{repo} has no file {file} at revision {REVISION} on {endpoint}")]
    EntryNotFound {
        repo: String,
        file: String,
        endpoint: String,
    },
    #[error("{repo} is gated on {endpoint}: accept its terms on the hub's page, then set HF_TOKEN")]
    Gated { repo: String, endpoint: String },
    #[error(
        "HF_HUB_OFFLINE is set and {file} of {repo} is not in the hub cache {cache}: fetch it where there is a network (`promptmner models fetch {repo}`) or unset HF_HUB_OFFLINE"
    )]
    Offline {
        repo: String,
        file: String,
        cache: PathBuf,
    },
    #[error("{url} answered {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "cannot reach {url}: {reason}; set HF_ENDPOINT for a mirror or HF_HUB_OFFLINE=1 for the cache only, or place config.json, model.safetensors and tokenizer.json of {repo} in a folder and give its path"
    )]
    Network {
        url: String,
        reason: String,
        repo: String,
    },
    #[error("{url} gave no {header} header; is HF_ENDPOINT a Hugging Face hub or mirror?")]
    MissingHeader { url: String, header: &'static str },
    #[error(
        "the download of {file} from {repo} stopped at {done} of {size} bytes; run the fetch again to continue it"
    )]
    Truncated {
        repo: String,
        file: String,
        done: u64,
        size: u64,
    },
    #[error(
        "{file} from {repo} does not match its checksum (SHA-256 {found}, the hub says {expected}); it was not kept: fetch again, or check the mirror"
    )]
    Checksum {
        repo: String,
        file: String,
        expected: String,
        found: String,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the hub says of one file before it is downloaded.
struct FileInfo {
    /// Where the bytes are (after the hub's own redirects).
    url: String,
    commit: String,
    etag: String,
    size: u64,
}

/// A file of `repo` at `main`: from the cache when it is there, else downloaded into
/// the cache (progress through `progress`). Returns its snapshot path.
pub fn fetch_file(
    hub: &HubSettings,
    repo: &str,
    file: &str,
    progress: &dyn Progress,
) -> Result<PathBuf, HubError> {
    if let Some(path) = hub.cached_file(repo, file) {
        return Ok(path);
    }
    if hub.offline {
        return Err(HubError::Offline {
            repo: repo.into(),
            file: file.into(),
            cache: hub.cache.clone(),
        });
    }
    let client = Client::new(hub);
    let info = client.info(repo, file)?;
    let dir = hub.repo_dir(repo);
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
    let blob = blobs.join(&info.etag);
    // One downloader per blob; a second waits and then finds it done.
    let lock_path = hub
        .cache
        .join(".locks")
        .join(dir.file_name().unwrap_or_default())
        .join(format!("{}.lock", info.etag));
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let lock = std::fs::File::create(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    if !blob.is_file() {
        let partial = blobs.join(format!("{}.incomplete", info.etag));
        client.download(repo, file, &info, &partial, progress)?;
        verify(repo, file, &info, &partial)?;
        std::fs::rename(&partial, &blob).map_err(io_error(&blob))?;
    }
    drop(lock);
    link_snapshot(&dir, &info, file)
}

/// `snapshots/<commit>/<file>` linking to the blob, and `refs/main` naming the commit.
fn link_snapshot(dir: &Path, info: &FileInfo, file: &str) -> Result<PathBuf, HubError> {
    let snapshot = dir.join("snapshots").join(&info.commit);
    std::fs::create_dir_all(&snapshot).map_err(io_error(&snapshot))?;
    let pointer = snapshot.join(file);
    if !pointer.is_file() {
        let _ = std::fs::remove_file(&pointer);
        let target = Path::new("../../blobs").join(&info.etag);
        std::os::unix::fs::symlink(&target, &pointer).map_err(io_error(&pointer))?;
    }
    let refs = dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(io_error(&refs))?;
    let main = refs.join(REVISION);
    crate::util::write_atomic(&main, info.commit.as_bytes()).map_err(io_error(&main))?;
    Ok(pointer)
}

/// The size the hub announced, and for an LFS file (a 64-hex ETag) its SHA-256. A
/// file that fails is removed, so a retry starts afresh.
fn verify(repo: &str, file: &str, info: &FileInfo, path: &Path) -> Result<(), HubError> {
    let size = std::fs::metadata(path).map_err(io_error(path))?.len();
    if size < info.size {
        return Err(HubError::Truncated {
            repo: repo.into(),
            file: file.into(),
            done: size,
            size: info.size,
        });
    }
    let is_sha256 = info.etag.len() == 64 && info.etag.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_sha256 && size == info.size {
        return Ok(());
    }
    let found = sha256_of(path)?;
    if size == info.size && found.eq_ignore_ascii_case(&info.etag) {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(HubError::Checksum {
        repo: repo.into(),
        file: file.into(),
        expected: info.etag.clone(),
        found,
    })
}

fn sha256_of(path: &Path) -> Result<String, HubError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_error(path))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// HTTP to the hub: redirects followed by hand, so that the token goes to the hub's own
/// host only and a relative redirect (a renamed repository) keeps the metadata.
struct Client<'a> {
    hub: &'a HubSettings,
    agent: ureq::Agent,
}

impl<'a> Client<'a> {
    fn new(hub: &'a HubSettings) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(std::time::Duration::from_secs(20))
            .timeout_read(std::time::Duration::from_secs(60))
            .user_agent(concat!("promptmner/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { hub, agent }
    }

    fn url(&self, repo: &str, file: &str) -> String {
        format!("{}/{repo}/resolve/{REVISION}/{file}", self.hub.endpoint)
    }

    /// A request with the token where the URL is the hub's own.
    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let request = self
            .agent
            .request(method, url)
            .set("Accept-Encoding", "identity");
        match &self.hub.token {
            Some(token) if url.starts_with(&self.hub.endpoint) => {
                request.set("Authorization", &format!("Bearer {token}"))
            }
            _ => request,
        }
    }

    /// `method url` with `range`, following redirects; the first response's headers
    /// (the hub's, not a CDN's) come back beside the last response.
    fn call(
        &self,
        method: &str,
        url: &str,
        range: Option<&str>,
        repo: &str,
        file: &str,
    ) -> Result<(ureq::Response, Option<ureq::Response>, String), HubError> {
        let mut url = url.to_string();
        let mut first: Option<ureq::Response> = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.request(method, &url);
            if let Some(range) = range {
                request = request.set("Range", range);
            }
            let response = match request.call() {
                Ok(response) => response,
                Err(ureq::Error::Status(status, response)) => {
                    return Err(self.status_error(status, response, &url, repo, file));
                }
                Err(ureq::Error::Transport(transport)) => {
                    return Err(HubError::Network {
                        url,
                        reason: transport.to_string(),
                        repo: repo.into(),
                    });
                }
            };
            if !(300..400).contains(&response.status()) {
                return Ok((response, first, url));
            }
            let location = response.header("location").unwrap_or_default().to_string();
            url = if location.starts_with('/') {
                format!("{}{location}", origin(&url))
            } else {
                location
            };
            // The hub's own answer carries the ETag and commit; a CDN's does not.
            let keep = first.is_none() && response.header("x-repo-commit").is_some();
            if keep {
                first = Some(response);
            }
        }
        Err(HubError::Network {
            url,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
            repo: repo.into(),
        })
    }

    fn status_error(
        &self,
        status: u16,
        response: ureq::Response,
        url: &str,
        repo: &str,
        file: &str,
    ) -> HubError {
        let endpoint = self.hub.endpoint.clone();
        match response.header("x-error-code").unwrap_or_default() {
            "RepoNotFound" => HubError::RepoNotFound {
                repo: repo.into(),
                endpoint,
            },
            "EntryNotFound" => HubError::EntryNotFound {
                repo: repo.into(),
                file: file.into(),
                endpoint,
            },
            "GatedRepo" => HubError::Gated {
                repo: repo.into(),
                endpoint,
            },
            _ if status == 401 => HubError::RepoNotFound {
                repo: repo.into(),
                endpoint,
            },
            _ => HubError::Http {
                url: url.into(),
                status,
                message: response
                    .header("x-error-message")
                    .unwrap_or("no message")
                    .to_string(),
            },
        }
    }

    /// Commit, ETag and size from a HEAD of the file (the hub's answer before any
    /// redirect to a CDN).
    fn info(&self, repo: &str, file: &str) -> Result<FileInfo, HubError> {
        let url = self.url(repo, file);
        let (last, first, final_url) = self.call("HEAD", &url, None, repo, file)?;
        let hub_answer = first.as_ref().unwrap_or(&last);
        let header = |name: &'static str| -> Result<String, HubError> {
            hub_answer
                .header(name)
                .map(str::to_string)
                .ok_or(HubError::MissingHeader {
                    url: url.clone(),
                    header: name,
                })
        };
        let etag = hub_answer
            .header("x-linked-etag")
            .map(str::to_string)
            .map_or_else(|| header("etag"), Ok)?;
        let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
        let size = hub_answer
            .header("x-linked-size")
            .or_else(|| last.header("content-length"))
            .and_then(|s| s.parse().ok())
            .ok_or(HubError::MissingHeader {
                url: url.clone(),
                header: "content-length",
            })?;
        Ok(FileInfo {
            url: final_url,
            commit: header("x-repo-commit")?,
            etag,
            size,
        })
    }

    /// Into `partial`, continuing what a stopped download left there.
    fn download(
        &self,
        repo: &str,
        file: &str,
        info: &FileInfo,
        partial: &Path,
        progress: &dyn Progress,
    ) -> Result<(), HubError> {
        let mut done = std::fs::metadata(partial).map_or(0, |m| m.len());
        if done >= info.size {
            // A complete (or overlong) leftover: verify decides; overlong is refetched.
            if done > info.size {
                let _ = std::fs::remove_file(partial);
                done = 0;
            } else {
                return Ok(());
            }
        }
        let range = format!("bytes={done}-");
        let (response, _, _) = self.call("GET", &info.url, Some(&range), repo, file)?;
        // 206: the rest; 200: the server ignored the range, so start over.
        let append = response.status() == 206 && done > 0;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(partial)
            .map_err(io_error(partial))?;
        if !append {
            done = 0;
        }
        let mut task = Task::start(progress, format!("{repo}/{file}"), info.size);
        task.advance(done);
        let mut reader = response.into_reader();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                // The connection dropped: what arrived is kept for the next try.
                Err(_) => break,
            };
            out.write_all(&buffer[..read]).map_err(io_error(partial))?;
            done += read as u64;
            task.advance(read as u64);
        }
        out.sync_all().map_err(io_error(partial))?;
        if done < info.size {
            return Err(HubError::Truncated {
                repo: repo.into(),
                file: file.into(),
                done,
                size: info.size,
            });
        }
        Ok(())
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_layout_is_huggingface_hubs() {
        let hub = HubSettings {
            endpoint: "http://x".into(),
            cache: PathBuf::from("/c/hub"),
            token: None,
            offline: false,
        };
        assert_eq!(
            hub.repo_dir("openai/clip-vit-base-patch32"),
            PathBuf::from("/c/hub/models--openai--clip-vit-base-patch32")
        );
        assert_eq!(origin("http://127.0.0.1:8080/a/b"), "http://127.0.0.1:8080");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
    }

    #[test]
    fn a_verified_size_and_sha256_are_both_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"weights").unwrap();
        let sha = sha256_of(&path).unwrap();
        let info = |etag: &str, size| FileInfo {
            url: String::new(),
            commit: String::new(),
            etag: etag.into(),
            size,
        };
        assert!(verify("r", "f", &info(&sha, 7), &path).is_ok());
        let short = verify("r", "f", &info(&sha, 9), &path).unwrap_err();
        assert!(
            matches!(
                short,
                HubError::Truncated {
                    done: 7,
                    size: 9,
                    ..
                }
            ),
            "{short}"
        );
        // A git blob id (40 hex) is checked by size; a wrong SHA-256 removes the file.
        assert!(verify("r", "f", &info(&"a".repeat(40), 7), &path).is_ok());
        let wrong = verify("r", "f", &info(&"b".repeat(64), 7), &path).unwrap_err();
        assert!(matches!(wrong, HubError::Checksum { .. }), "{wrong}");
        assert!(!path.exists());
    }
}
