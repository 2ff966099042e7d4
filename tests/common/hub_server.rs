//! A Hugging Face hub of the tests' own on 127.0.0.1: the file API as huggingface_hub
//! and hf-hub use it. `HEAD`/`GET /{repo}/resolve/{revision}/{file}` answer with
//! `X-Repo-Commit` and `ETag`; LFS files (weights) answer `302` to `/cdn/<sha256>` with
//! `X-Linked-Etag` (their SHA-256) and `X-Linked-Size`, as the hub does; `Range` gives
//! `206` with `Content-Range`; an unknown repository or file is `404` with
//! `X-Error-Code`; an alias repository answers a relative `307` (a renamed
//! repository). Faults on demand: a body cut off once, bytes that do not match the ETag.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// One repository: its commit and files.
#[derive(Default, Clone)]
pub struct Repo {
    pub commit: String,
    pub files: HashMap<String, Vec<u8>>,
}

impl Repo {
    /// The named files of folder `dir`, at a made-up commit.
    pub fn from_dir(dir: &Path, files: &[&str]) -> Self {
        Self {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            files: files
                .iter()
                .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
                .collect(),
        }
    }
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    aliases: HashMap<String, String>,
    /// (repo, file) whose next body stops halfway.
    cut_once: HashSet<(String, String)>,
    /// (repo, file) served with other bytes than its ETag says.
    corrupt: HashSet<(String, String)>,
    requests: Vec<String>,
}

/// The running server; stops when dropped.
pub struct HubServer {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".bin")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

impl HubServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state, port));
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            port,
        }
    }

    pub fn add_repo(&self, name: &str, repo: Repo) {
        self.state.lock().unwrap().repos.insert(name.into(), repo);
    }

    pub fn add_alias(&self, alias: &str, target: &str) {
        let mut state = self.state.lock().unwrap();
        state.aliases.insert(alias.into(), target.into());
    }

    pub fn cut_once(&self, repo: &str, file: &str) {
        let mut state = self.state.lock().unwrap();
        state.cut_once.insert((repo.into(), file.into()));
    }

    pub fn corrupt(&self, repo: &str, file: &str) {
        let mut state = self.state.lock().unwrap();
        state.corrupt.insert((repo.into(), file.into()));
    }

    /// Every request line served so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A response: status, headers, body (HEAD sends the headers only).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of the body actually sent before the connection is closed.
    cut_at: Option<usize>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_at: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn not_found(code: &str) -> Self {
        Self::new(404)
            .header("X-Error-Code", code)
            .header("X-Error-Message", format!("{code} (test hub)"))
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, port: u16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_lowercase(), value.trim().to_string());
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    {
        let mut state = state.lock().unwrap();
        state.requests.push(format!("{method} {path}"));
        if let Some(auth) = headers.get("authorization") {
            state.requests.push(format!("authorization: {auth}"));
        }
    }
    let reply = route(method == "GET", path, &headers, state, port);
    write_reply(stream, method == "HEAD", reply);
}

fn route(
    get: bool,
    path: &str,
    headers: &HashMap<String, String>,
    state: &Mutex<State>,
    port: u16,
) -> Reply {
    let mut state = state.lock().unwrap();
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let found = state
            .repos
            .values()
            .flat_map(|r| r.files.values())
            .find(|bytes| sha256(bytes) == sha)
            .cloned();
        let corrupt = state.corrupt.iter().any(|(repo, file)| {
            state
                .repos
                .get(repo)
                .and_then(|r| r.files.get(file))
                .is_some_and(|b| sha256(b) == sha)
        });
        let cut = state
            .cut_once
            .iter()
            .filter(|_| get)
            .find(|(repo, file)| {
                state
                    .repos
                    .get(repo)
                    .and_then(|r| r.files.get(file))
                    .is_some_and(|b| sha256(b) == sha)
            })
            .cloned();
        let Some(mut bytes) = found else {
            return Reply::new(404);
        };
        if corrupt {
            bytes[0] ^= 0xff;
        }
        let cut_at = cut.map(|key| {
            state.cut_once.remove(&key);
            bytes.len() / 2
        });
        let mut reply = ranged(bytes, headers.get("range"));
        reply.cut_at = cut_at;
        return reply;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Reply::new(400);
    };
    let Some((repo, tail)) = rest.split_once("/resolve/") else {
        return Reply::not_found("RepoNotFound");
    };
    if let Some(target) = state.aliases.get(repo) {
        return Reply::new(307).header("Location", format!("/{target}/resolve/{tail}"));
    }
    let Some((revision, file)) = tail.split_once('/') else {
        return Reply::not_found("EntryNotFound");
    };
    let Some(entry) = state.repos.get(repo) else {
        return Reply::not_found("RepoNotFound");
    };
    if revision != "main" && revision != entry.commit {
        return Reply::not_found("RevisionNotFound");
    }
    let Some(bytes) = entry.files.get(file).cloned() else {
        return Reply::not_found("EntryNotFound");
    };
    let commit = entry.commit.clone();
    if is_lfs(file) {
        let sha = sha256(&bytes);
        return Reply::new(302)
            .header("Location", format!("http://127.0.0.1:{port}/cdn/{sha}"))
            .header("X-Repo-Commit", commit)
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("ETag", format!("\"{sha}\""));
    }
    // A regular file's ETag is its git blob id; any 40-hex value stands in for it.
    let etag = &sha256(&bytes)[..40];
    let etag = format!("\"{etag}\"");
    ranged(bytes, headers.get("range"))
        .header("X-Repo-Commit", commit)
        .header("ETag", etag)
}

/// The body, or the part a `Range: bytes=a-[b]` asks for.
fn ranged(bytes: Vec<u8>, range: Option<&String>) -> Reply {
    let total = bytes.len();
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        let mut reply = Reply::new(200);
        reply.body = bytes;
        return reply;
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = start.parse().unwrap_or(0);
    let end: usize = end
        .parse()
        .map_or(total.saturating_sub(1), |e: usize| e.min(total - 1));
    if start >= total {
        return Reply::new(416).header("Content-Range", format!("bytes */{total}"));
    }
    let mut reply = Reply::new(206).header("Content-Range", format!("bytes {start}-{end}/{total}"));
    reply.body = bytes[start..=end].to_vec();
    reply
}

fn write_reply(mut stream: TcpStream, head: bool, reply: Reply) {
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let _ = stream.write_all(out.as_bytes());
    if !head {
        let sent = reply.cut_at.unwrap_or(reply.body.len());
        let _ = stream.write_all(&reply.body[..sent]);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    // Drains what the client still sends, so the close is not a reset.
    let _ = stream.read(&mut [0u8; 16]);
}
