//! `ringkv serve` over time: data survives a restart; SIGTERM, SIGINT and SHUTDOWN stop
//! accepting, flush and exit 0; a config file sets what the flags set; the metrics
//! endpoint; a second server cannot take the same port or directory; `--data-dir`
//! spreads the database over more directories, which later starts find by themselves.

mod serve_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serve_support::{Server, tempdir};

#[test]
fn data_survives_restarts_and_every_stop_exits_zero() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--durability", "buffered"]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET")
            .arg(format!("key{i}"))
            .arg(format!("value{i}"))
            .ignore();
    }
    pipe.cmd("INCRBY").arg("counter").arg(7).ignore();
    let () = pipe.query(&mut c).unwrap();
    // Buffered writes are in memory now; SIGTERM must flush them.
    let status = server.signal(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));

    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 1001);
    for i in (0..1000).step_by(37) {
        let v: String = redis::cmd("GET")
            .arg(format!("key{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, format!("value{i}"));
    }
    let _: () = redis::cmd("SET")
        .arg("after-sigint")
        .arg("1")
        .query(&mut c)
        .unwrap();
    assert_eq!(server.signal(Signal::SIGINT).code(), Some(0));

    let server = Server::start(dir.path(), &["--cores", "3"]);
    let mut c = server.client();
    let v: i64 = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
    assert_eq!(v, 7);
    let v: String = redis::cmd("GET").arg("after-sigint").query(&mut c).unwrap();
    assert_eq!(v, "1");
    // SHUTDOWN answers nothing and the process exits 0 by itself.
    let result: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
    assert!(result.is_err());
    let stderr_before = server.stderr();
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{stderr_before}");
}

#[test]
fn data_dirs_given_once_are_found_again_at_every_start() {
    let dir = tempdir();
    let (data, other) = (dir.path().join("data"), dir.path().join("nvme1"));
    let server = Server::start(&data, &["--data-dir", other.to_str().unwrap()]);
    let mut c = server.client();
    for i in 0..300 {
        let () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(server.signal(Signal::SIGTERM).code(), Some(0));
    let leaves = std::fs::read_dir(other.join("substores")).unwrap().count();
    assert!(leaves >= 5, "leaves in the other directory: {leaves}");
    let server = Server::start(&data, &[]);
    let mut c = server.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 300);
    assert_eq!(server.signal(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn sigterm_under_load_keeps_every_acknowledged_buffered_write() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--durability", "buffered"]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acked, stop) = (server.url(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = serve_support::connect(&url);
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("w{w}-{i}");
                    let ok: redis::RedisResult<()> =
                        redis::cmd("SET").arg(&key).arg(i).query(&mut c);
                    match ok {
                        Ok(()) => acked.lock().unwrap().push(key),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let status = server.signal(Signal::SIGTERM);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(status.code(), Some(0));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} writes", acked.len());
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    for chunk in acked.chunks(500) {
        let values: Vec<Option<i64>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
        for (key, value) in chunk.iter().zip(values) {
            assert!(value.is_some(), "acknowledged {key} lost");
        }
    }
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_config_file_sets_what_flags_set_and_metrics_are_served() {
    let dir = tempdir();
    let config = dir.path().join("ringkv.toml");
    std::fs::write(
        &config,
        "durability = \"buffered\"\nmaxclients = 50\nrequirepass = \"from-file\"\n\
         metrics_addr = \"127.0.0.1:0\"\nport = 1\ncores = 1\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    // --port 0 (added by Server::start) beats the file's port 1; --cores 2 its cores 1.
    let server = Server::start(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let mut c = serve_support::connect(&format!("redis://:from-file@127.0.0.1:{}/", server.port));
    let values: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("durability")
        .arg("maxclients")
        .arg("cores")
        .query(&mut c)
        .unwrap();
    assert_eq!(values["durability"], "buffered");
    assert_eq!(values["maxclients"], "50");
    assert_eq!(values["cores"], "2");
    for i in 0..100 {
        let _: () = redis::cmd("SET").arg(i).arg(i).query(&mut c).unwrap();
        let _: i64 = redis::cmd("GET").arg(i).query(&mut c).unwrap();
    }
    let metrics = http_get(server.metrics_url.as_deref().unwrap());
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for needle in [
        "# TYPE ringkv_commands_total counter",
        "ringkv_command_latency_seconds{core=\"0\",kind=\"write\",quantile=\"0.99\"}",
        "ringkv_command_latency_seconds_count{core=\"1\",kind=\"read\"}",
        "ringkv_queue_depth{core=\"1\"}",
        "ringkv_keys{core=\"0\"}",
        "ringkv_splits_total{core=\"0\"}",
        "ringkv_compacted_extents_total{core=\"1\"}",
        "ringkv_net_input_bytes_total{core=\"0\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let writes: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ringkv_commands_total{") && l.contains("kind=\"write\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(writes, 100.0);
    let keys: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ringkv_keys{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(keys, 100.0);
    let url = server
        .metrics_url
        .as_deref()
        .unwrap()
        .replace("/metrics", "/other");
    assert!(http_get(&url).starts_with("HTTP/1.1 404"));
}

#[test]
fn a_restart_takes_the_same_port_while_the_last_connections_close() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let port = server.port.to_string();
    // Clients that stay connected: the server closes first, so its side of each
    // connection lingers (FIN-WAIT) after it exits, holding the port.
    let clients: Vec<_> = (0..4).map(|_| server.client()).collect();
    assert_eq!(server.signal(Signal::SIGTERM).code(), Some(0));
    let server = Server::start(dir.path(), &["--port", &port]);
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    drop(clients);
}

#[test]
fn a_second_server_cannot_take_the_same_port_or_directory() {
    let dir = tempdir();
    let other = tempdir();
    let first = Server::start(dir.path(), &[]);
    let port = first.port.to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(["serve", "--port", &port, "--dir"])
        .arg(other.path())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(child.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&child.stderr).into_owned();
    assert!(stderr.contains("cannot listen"), "{stderr}");
    child = std::process::Command::new(env!("CARGO_BIN_EXE_ringkv"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(child.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&child.stderr).into_owned();
    assert!(stderr.contains("in use"), "{stderr}");
    let mut c = first.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}
