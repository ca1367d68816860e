//! Tools people already trust, against `ringkv serve`: redis-cli, redis-benchmark, and
//! twemproxy (nutcracker) in front of two servers. They come from Debian
//! (`tools/install-test-deps.sh`); a missing one fails the test loudly unless
//! RINGKV_SKIP_EXTERNAL=1.

mod serve_support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serve_support::{Server, connect_plain, external, free_port, tempdir, wait_listening};

fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn redis_cli_talks_to_ringkv() {
    let Some(cli) = external("redis-cli") else {
        return;
    };
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--requirepass", "pw"]);
    let port = server.port.to_string();
    let base = ["-p", port.as_str(), "--no-auth-warning", "-a", "pw"];
    let cli_run = |args: &[&str]| stdout(&run(&cli, &[&base[..], args].concat(), None));

    assert_eq!(cli_run(&["PING"]), "PONG\n");
    assert_eq!(cli_run(&["SET", "greeting", "hello"]), "OK\n");
    assert_eq!(cli_run(&["GET", "greeting"]), "hello\n");
    assert_eq!(cli_run(&["INCRBY", "n", "5"]), "5\n");
    assert_eq!(cli_run(&["SET", "k", "v", "EX", "100"]), "OK\n");
    assert_eq!(cli_run(&["TTL", "k"]), "100\n");
    // Mass insertion: the RESP protocol on stdin, as the Redis documentation teaches.
    let mut resp = Vec::new();
    for i in 0..1000 {
        let (k, v) = (format!("user:{i}"), format!("value-{i}"));
        write!(
            resp,
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        )
        .unwrap();
    }
    let piped = stdout(&run(&cli, &[&base[..], &["--pipe"]].concat(), Some(&resp)));
    assert!(piped.contains("errors: 0, replies: 1000"), "{piped}");
    assert_eq!(cli_run(&["DBSIZE"]), "1003\n");
    let scanned = cli_run(&["--scan", "--pattern", "user:99*"]);
    let mut keys: Vec<&str> = scanned.lines().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "user:99", "user:990", "user:991", "user:992", "user:993", "user:994", "user:995",
            "user:996", "user:997", "user:998", "user:999"
        ]
    );
    assert!(cli_run(&["INFO", "keyspace"]).contains("db0:keys=1003"));
    assert!(cli_run(&["-3", "HELLO", "3"]).contains("proto"));
    assert!(cli_run(&["COMMAND", "DOCS", "get"]).contains("summary"));
    // Without the password.
    let denied = stdout(&run(&cli, &["-p", &port, "GET", "greeting"], None));
    assert!(denied.contains("NOAUTH"), "{denied}");
}

#[test]
fn redis_benchmark_runs_against_ringkv() {
    let Some(benchmark) = external("redis-benchmark") else {
        return;
    };
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--durability", "buffered"]);
    let port = server.port.to_string();
    for pipeline in ["1", "16"] {
        let out = stdout(&run(
            &benchmark,
            &[
                "-p",
                &port,
                "-t",
                "set,get,incr,mset",
                "-n",
                "3000",
                "-c",
                "20",
                "-P",
                pipeline,
                "-r",
                "1000",
                "--csv",
            ],
            None,
        ));
        for test in ["\"SET\"", "\"GET\"", "\"INCR\"", "\"MSET (10 keys)\""] {
            let line = out
                .lines()
                .find(|l| l.starts_with(test))
                .unwrap_or_else(|| panic!("{test} missing from:\n{out}"));
            let rps: f64 = line
                .split(',')
                .nth(1)
                .unwrap()
                .trim_matches('"')
                .parse()
                .unwrap();
            assert!(rps > 0.0, "{line}");
        }
    }
    let mut c = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    // SET, GET and MSET use key:<0..1000>, INCR counter:<0..1000>.
    assert!(size > 100 && size <= 2000, "{size} keys");
}

/// A nutcracker (twemproxy) process, killed when dropped.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_twemproxy(
    nutcracker: &Path,
    dir: &Path,
    backends: &[&Server],
    extra: &str,
) -> (Proxy, u16) {
    let port = free_port();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, s)| format!("   - 127.0.0.1:{}:1 ringkv-{i}\n", s.port))
        .collect();
    let config = dir.join("nutcracker.yml");
    std::fs::write(
        &config,
        format!(
            "ringkv:\n  listen: 127.0.0.1:{port}\n  hash: murmur\n  distribution: ketama\n  \
             redis: true\n  auto_eject_hosts: false\n  timeout: 5000\n{extra}  servers:\n{servers}"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    run(nutcracker, &["-t", "-c", config], None);
    let stats_port = free_port().to_string();
    let log = dir.join("nutcracker.log");
    let child = Command::new(nutcracker)
        .args([
            "-c",
            config,
            "-s",
            &stats_port,
            "-a",
            "127.0.0.1",
            "-o",
            log.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Proxy(child);
    wait_listening(&format!("127.0.0.1:{port}"));
    (proxy, port)
}

#[test]
fn twemproxy_spreads_keys_over_two_ringkv_servers() {
    let Some(nutcracker) = external("nutcracker") else {
        return;
    };
    let Some(benchmark) = external("redis-benchmark") else {
        return;
    };
    let dirs = [tempdir(), tempdir()];
    let a = Server::start(dirs[0].path(), &["--cores", "1"]);
    let b = Server::start(dirs[1].path(), &["--cores", "1"]);
    let (_proxy, port) = start_twemproxy(&nutcracker, dirs[0].path(), &[&a, &b], "");
    let mut c = connect_plain(&format!("redis://127.0.0.1:{port}/"));

    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"))
            .ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    for i in (0..300).step_by(7) {
        let v: String = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, format!("value:{i}"));
    }
    // Twemproxy splits an MGET across the servers and joins the answers in order.
    let keys: Vec<String> = (0..50)
        .map(|i| format!("key:{i}"))
        .chain(["nope".into()])
        .collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    for (i, v) in values.iter().take(50).enumerate() {
        assert_eq!(v.as_deref(), Some(format!("value:{i}").as_str()));
    }
    assert_eq!(values[50], None);
    let n: i64 = redis::cmd("INCRBY")
        .arg("counter")
        .arg(3)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    let len: i64 = redis::cmd("APPEND")
        .arg("key:0")
        .arg("!")
        .query(&mut c)
        .unwrap();
    assert_eq!(len, 8);
    let deleted: i64 = redis::cmd("DEL")
        .arg("key:1")
        .arg("key:2")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(deleted, 2);

    // Both servers hold a share, and nothing is on both.
    let size = |s: &Server| -> i64 { redis::cmd("DBSIZE").query(&mut s.client()).unwrap() };
    let (size_a, size_b) = (size(&a), size(&b));
    assert_eq!(size_a + size_b, 299, "{size_a} + {size_b}");
    assert!(
        size_a > 50 && size_b > 50,
        "{size_a} and {size_b}: ketama should spread 299 keys"
    );

    // redis-benchmark through the proxy (it cannot fetch CONFIG there; that is a warning).
    let out = stdout(&run(
        &benchmark,
        &[
            "-p",
            &port.to_string(),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "8",
            "-r",
            "500",
            "--csv",
        ],
        None,
    ));
    assert!(out.contains("\"SET\"") && out.contains("\"GET\""), "{out}");
    let total = size(&a) + size(&b);
    assert!(total > 299, "{total}");
}

#[test]
fn twemproxy_authenticates_to_password_protected_servers() {
    let Some(nutcracker) = external("nutcracker") else {
        return;
    };
    let dirs = [tempdir(), tempdir()];
    let a = Server::start(dirs[0].path(), &["--cores", "1", "--requirepass", "pw"]);
    let b = Server::start(dirs[1].path(), &["--cores", "1", "--requirepass", "pw"]);
    let (_proxy, port) =
        start_twemproxy(&nutcracker, dirs[0].path(), &[&a, &b], "  redis_auth: pw\n");
    let mut c = connect_plain(&format!("redis://:pw@127.0.0.1:{port}/"));
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let values: Vec<i64> = redis::cmd("MGET")
        .arg((0..100).map(|i| format!("k{i}")).collect::<Vec<_>>())
        .query(&mut c)
        .unwrap();
    assert_eq!(values, (0..100).collect::<Vec<i64>>());
    // A client that has not authenticated to the proxy is refused by the proxy.
    let mut anonymous = connect_plain(&format!("redis://127.0.0.1:{port}/"));
    let e = serve_support::error_of(&mut anonymous, &[b"GET", b"k1"]);
    assert!(e.contains("NOAUTH"), "{e}");
    // What twemproxy does not forward (it closes the connection): run it against each
    // server. (Twemproxy reads multibulk requests only, not inline ones.)
    let mut raw = serve_support::Raw::connect(&format!("127.0.0.1:{port}"));
    raw.send(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    raw.expect(b"+OK\r\n");
    raw.send(b"*1\r\n$6\r\nDBSIZE\r\n");
    let after = raw.read_to_close();
    assert!(
        !after.starts_with(b":"),
        "twemproxy forwarded DBSIZE: {after:?}"
    );
}
