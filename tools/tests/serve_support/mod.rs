//! Starting the real `ringkv serve` binary for tests, and talking to it.

#![allow(dead_code)] // each test binary uses part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::IntoConnectionInfo;

/// A data directory on the work tree's disk (O_DIRECT needs a real file system).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `ringkv serve`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub metrics_url: Option<String>,
    pub dir: PathBuf,
    /// Whatever the server prints on stderr, collected in the background.
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts a server over `dir` with `extra` flags: 2 cores and a free port unless
    /// `extra` says otherwise.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::try_start(dir, extra).unwrap_or_else(|e| panic!("starting ringkv serve: {e}"))
    }

    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringkv"));
        command.arg("serve").arg("--dir").arg(dir);
        if !extra.contains(&"--port") {
            command.args(["--port", "0"]);
        }
        if !extra.contains(&"--cores") {
            command.args(["--cores", "2"]);
        }
        let mut child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let wants_metrics = extra.contains(&"--metrics-addr");
        let mut port = None;
        let mut metrics_url = None;
        let deadline = Instant::now() + START_TIMEOUT;
        while port.is_none() || (wants_metrics && metrics_url.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let errors: Vec<String> = err_rx.try_iter().collect();
                    return Err(format!(
                        "no 'listening on' line; stderr: {}",
                        errors.join("\n")
                    ));
                }
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                port = Some(addr.rsplit(':').next().unwrap().parse().unwrap());
            }
            if let Some(rest) = line.split("metrics on ").nth(1) {
                metrics_url = Some(rest.trim().to_string());
            }
        }
        Ok(Server {
            child: Some(child),
            port: port.unwrap(),
            metrics_url,
            dir: dir.to_path_buf(),
            stderr: err_rx,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        connect(&self.url())
    }

    /// A raw TCP connection (for inline commands and malformed input).
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.addr())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` and waits for the exit.
    pub fn signal(mut self, signal: nix::sys::signal::Signal) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// Waits for the process to exit on its own (after SHUTDOWN).
    pub fn wait(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A synchronous client for `url` (which may ask for RESP3 with `?protocol=resp3`).
pub fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

/// A client that sends nothing but the caller's commands (no CLIENT SETINFO): what a
/// proxy that knows only data commands, like twemproxy, accepts.
pub fn connect_plain(url: &str) -> redis::Connection {
    let info = url.into_connection_info().unwrap();
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings)).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

/// Runs one command and returns the error text it failed with.
pub fn error_of(con: &mut redis::Connection, args: &[&[u8]]) -> String {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!(
            "{:?} answered {v:?}, not an error",
            String::from_utf8_lossy(args[0])
        ),
        Err(e) => e.to_string(),
    }
}

/// A raw socket speaking bytes.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until `expected` bytes arrived (or fails after the timeout).
    pub fn expect(&mut self, expected: &[u8]) {
        let got = self.read_exactly(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    pub fn read_exactly(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        self.stream.read_exact(&mut got).unwrap();
        got
    }

    /// Reads until the server closes the connection; everything it sent.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        match self.stream.read_to_end(&mut got) {
            Ok(_) => got,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
            Err(e) => panic!("expected the server to close the connection: {e} (got {got:?})"),
        }
    }
}

/// An external program the test needs, from PATH. When it is missing, the project's own
/// `tools/install-test-deps.sh` installs it (once per test process), so that the README's
/// test command passes on a fresh machine by itself. `None` (skip) only when
/// RINGKV_SKIP_EXTERNAL=1; a loud failure when the install does not bring it.
pub fn external(program: &str) -> Option<PathBuf> {
    if let Some(found) = on_path(program) {
        return Some(found);
    }
    if std::env::var("RINGKV_SKIP_EXTERNAL").as_deref() == Ok("1") {
        eprintln!("skipping: {program} is not installed and RINGKV_SKIP_EXTERNAL=1");
        return None;
    }
    let install = install_test_deps();
    if let Some(found) = on_path(program) {
        return Some(found);
    }
    panic!(
        "{program} is not installed, and tools/install-test-deps.sh did not bring it \
         ({install}); install Debian's redis-tools, redis-server and nutcracker, or set \
         RINGKV_SKIP_EXTERNAL=1 to skip these tests"
    );
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// Runs tools/install-test-deps.sh once per process; what it said, for messages.
fn install_test_deps() -> &'static str {
    static OUTCOME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OUTCOME.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/install-test-deps.sh");
        eprintln!("installing the serve tests' programs with {script}");
        match Command::new("bash").arg(script).output() {
            Ok(out) if out.status.success() => "it ran".to_owned(),
            Ok(out) => format!(
                "it failed with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => format!("it could not run: {e}"),
        }
    })
}

/// A redis-server on a free port, without persistence; killed on drop.
pub struct Redis(Child, pub String);

impl Redis {
    pub fn start(program: &std::path::Path) -> Redis {
        let port = free_port().to_string();
        let child = Command::new(program)
            .args(["--port", &port, "--save", "", "--appendonly", "no"])
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr);
        Redis(child, format!("redis://{addr}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A reply as text (for comparing servers): a value, or an error's code and message as
/// the client read them. `line` is split at spaces; a word `""` is an empty argument.
pub fn reply(con: &mut redis::Connection, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(if *w == "\"\"" { "" } else { *w });
    }
    match cmd.query::<redis::Value>(con) {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error {:?} {:?}", e.code(), e.detail()),
    }
}

/// A redis-server and a `ringkv serve`, each fresh, with a connection to each.
pub struct Compared {
    pub theirs: redis::Connection,
    pub ours: redis::Connection,
    _redis: Redis,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// Sends each line of `script` to a fresh redis-server and a fresh `ringkv serve` and
/// asserts the same reply from both; hands both back for further checks. `None` when
/// redis-server is missing and RINGKV_SKIP_EXTERNAL=1.
pub fn compare_with_redis(script: impl IntoIterator<Item = String>) -> Option<Compared> {
    let redis = Redis::start(&external("redis-server")?);
    let mut theirs = connect_plain(&redis.1);
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut ours = server.client();
    for line in script {
        let (want, got) = (reply(&mut theirs, &line), reply(&mut ours, &line));
        assert_eq!(got, want, "{line}");
    }
    Some(Compared {
        theirs,
        ours,
        _redis: redis,
        _server: server,
        _dir: dir,
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: &str) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A random number from the standard library's seeded hasher.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}
