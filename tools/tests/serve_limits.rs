//! `ringkv serve` is safe by default: a password guards every command but AUTH, HELLO
//! and QUIT; requests, arguments, connections and replies are bounded; malformed input
//! closes that connection with a protocol error and nothing else.

mod serve_support;

use std::time::{Duration, Instant};

use serve_support::{Raw, Server, connect, error_of, tempdir};

fn protocol_error_then_close(raw: &mut Raw, what: &str) {
    let got = String::from_utf8_lossy(&raw.read_to_close()).into_owned();
    assert!(
        got.starts_with("-ERR Protocol error: ") && got.ends_with("\r\n") && got.contains(what),
        "expected a protocol error about {what:?}, got {got:?}"
    );
}

#[test]
fn a_password_guards_every_command_but_auth_hello_and_quit() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    for command in [
        "GET k",
        "PING",
        "SET k v",
        "INFO",
        "SCAN 0",
        "FLUSHDB",
        "SHUTDOWN",
        "CLIENT ID",
    ] {
        raw.send(format!("{command}\r\n").as_bytes());
        raw.expect(b"-NOAUTH Authentication required.\r\n");
    }
    raw.send(b"AUTH wrong\r\nAUTH default wrong\r\nAUTH someone s3cret\r\n");
    let wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    raw.expect(&[&wrongpass[..], wrongpass, wrongpass].concat());
    raw.send(b"HELLO 3\r\n");
    let reply = raw.read_exactly(7);
    assert_eq!(&reply, b"-NOAUTH");
    raw.send(b"PING\r\n");
    let mut line = Vec::new();
    while !line.ends_with(b"Authentication required.\r\n") {
        line.extend(raw.read_exactly(1));
    }
    raw.send(b"AUTH s3cret\r\nGET k\r\nPING\r\n");
    raw.expect(b"+OK\r\n$-1\r\n+PONG\r\n");

    // HELLO can authenticate; QUIT needs nothing.
    let mut raw = server.raw();
    raw.send(b"HELLO 2 AUTH default s3cret SETNAME app\r\n");
    let reply = raw.read_exactly(5);
    assert_eq!(&reply, b"*16\r\n");
    let mut raw = server.raw();
    raw.send(b"QUIT\r\n");
    raw.expect(b"+OK\r\n");
    assert!(raw.read_to_close().is_empty());

    // Before AUTH, requests are held to Redis's small bounds.
    let mut raw = server.raw();
    raw.send(b"*11\r\n");
    protocol_error_then_close(&mut raw, "invalid multibulk length");
    let mut raw = server.raw();
    raw.send(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n");
    protocol_error_then_close(&mut raw, "invalid bulk length");

    // A real client with the password in its URL.
    let mut c = connect(&format!("redis://:s3cret@127.0.0.1:{}/", server.port));
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v");
    let mut unauthenticated = server.client();
    let e = error_of(&mut unauthenticated, &[b"GET", b"k"]);
    assert!(e.contains("NOAUTH"), "{e}");
}

#[test]
fn auth_without_a_password_set_is_an_error() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client();
    let e = error_of(&mut c, &[b"AUTH", b"x"]);
    assert!(e.contains("without any password configured"), "{e}");
}

#[test]
fn connections_past_maxclients_are_refused_until_one_leaves() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--maxclients", "3"]);
    let mut clients: Vec<Raw> = (0..3).map(|_| server.raw()).collect();
    for c in &mut clients {
        c.send(b"PING\r\n");
        c.expect(b"+PONG\r\n");
    }
    let mut refused = server.raw();
    assert_eq!(
        refused.read_to_close(),
        b"-ERR max number of clients reached\r\n"
    );
    drop(clients.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = server.raw();
        next.send(b"PING\r\n");
        let mut reply = [0u8; 7];
        if std::io::Read::read_exact(&mut next.stream, &mut reply).is_ok() && &reply == b"+PONG\r\n"
        {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a client left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut info = clients.pop().unwrap();
    info.send(b"INFO stats\r\n");
    let text = String::from_utf8_lossy(&info.read_exactly(200)).into_owned();
    assert!(!text.contains("rejected_connections:0"), "{text}");
}

#[test]
fn requests_past_the_size_and_argument_limits_are_refused() {
    let dir = tempdir();
    let server = Server::start(
        dir.path(),
        &["--max-input-bytes", "65536", "--max-args", "8"],
    );
    let mut bystander = server.client();
    let cases: &[(&[u8], &str)] = &[
        // The header alone shows the request cannot fit: refused before the body comes.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n",
            "input buffer limit",
        ),
        // Over ringkv::VALUE_LEN_MAX (16 MiB).
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16777217\r\n",
            "invalid bulk length",
        ),
        (b"*9\r\n", "invalid multibulk length"),
    ];
    for (request, what) in cases {
        let mut raw = server.raw();
        raw.send(request);
        protocol_error_then_close(&mut raw, what);
        let pong: String = redis::cmd("PING").query(&mut bystander).unwrap();
        assert_eq!(pong, "PONG");
    }
    let mut raw = server.raw();
    raw.send(&vec![b'a'; 70_000]);
    protocol_error_then_close(&mut raw, "too big inline request");

    // Just under the limits works.
    let value = vec![b'x'; 60_000];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut bystander)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut bystander).unwrap();
    assert_eq!(back, value);
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .arg("c")
        .arg(3)
        .query(&mut bystander)
        .unwrap();
}

#[test]
fn replies_past_the_output_limit_are_refused_and_the_connection_goes_on() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--max-output-bytes", "8192"]);
    let mut c = server.client();
    let value = vec![b'v'; 5000];
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg(&value)
        .arg("b")
        .arg(&value)
        .query(&mut c)
        .unwrap();
    let a: Vec<u8> = redis::cmd("GET").arg("a").query(&mut c).unwrap();
    assert_eq!(a.len(), 5000);
    let e = error_of(&mut c, &[b"MGET", b"a", b"b"]);
    assert!(e.contains("output limit"), "{e}");
    let both: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(both[1], None);
}

/// The server's resident memory, from `/proc/PID/status`.
fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap();
    kib.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        << 10
}

/// A client that pipelines requests for 1 GiB of replies and never reads them: the
/// server writes until the socket is full, then waits for it (reading no more of that
/// client's requests), so its memory stays near `max_output_bytes`; other clients are
/// served meanwhile.
#[test]
fn a_client_that_never_reads_cannot_grow_the_server_memory() {
    use std::io::Write;
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--max-output-bytes", "1048576"]);
    let mut c = server.client();
    let big = vec![b'v'; 512 << 10];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(got.len(), big.len());
    let before = rss_bytes(server.pid());
    let mut silent = std::net::TcpStream::connect(server.addr()).unwrap();
    let sender = std::thread::spawn(move || {
        // 2048 GETs: 1 GiB of replies. The write may block once the server stops
        // reading; it ends when the stream is shut down below.
        let requests = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(2048);
        let _ = silent.write_all(&requests);
        silent
    });
    let mut peak = before;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes(server.pid()));
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG", "another client is still served");
    }
    assert!(
        peak < before + (64 << 20),
        "the server grew from {before} to {peak} bytes for a client that does not read"
    );
    drop(sender);
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &[]);
    let mut bystander = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut bystander)
        .unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$4\r\nPINGxx", "expected CRLF"),
        (b"*1\n", "expected CRLF"),
        (
            b"*99999999999999999999999999\r\n",
            "too big mbulk count string",
        ),
        (b"GET \"k\n", "unbalanced quotes"),
    ];
    for (input, what) in cases {
        let mut raw = server.raw();
        raw.send(input);
        protocol_error_then_close(&mut raw, what);
        let v: String = redis::cmd("GET").arg("k").query(&mut bystander).unwrap();
        assert_eq!(v, "v");
    }
    // Requests before the bad bytes are answered first.
    let mut raw = server.raw();
    raw.send(b"PING\r\n*1\r\n$4\r\nECHO\r\n*1\r\n$x\r\n");
    let got = raw.read_to_close();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "+PONG\r\n-ERR wrong number of arguments for 'echo' command\r\n\
         -ERR Protocol error: invalid bulk length\r\n"
    );
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut bystander)
        .unwrap();
    assert!(
        info.contains(&format!("total_error_replies_protocol:{}", cases.len() + 1)),
        "{info}"
    );
}

#[test]
fn a_silent_connection_is_closed_after_timeout_and_a_busy_one_is_not() {
    let dir = tempdir();
    let server = Server::start(dir.path(), &["--timeout", "1"]);
    let mut busy = server.raw();
    let mut silent = server.raw();
    silent.send(b"PING\r\n");
    silent.expect(b"+PONG\r\n");
    let started = Instant::now();
    // The busy one speaks twice a second for two seconds.
    for _ in 0..4 {
        busy.send(b"PING\r\n");
        busy.expect(b"+PONG\r\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(silent.read_to_close().is_empty(), "closed without a word");
    assert!(started.elapsed() >= Duration::from_millis(900));
    busy.send(b"CONFIG GET timeout\r\n");
    busy.expect(b"*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n");
}

/// An address of this machine other than loopback, if it has one (the test of
/// protected mode needs a client that is not on loopback).
fn outside_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn protected_mode_turns_away_other_machines_without_a_password() {
    let Some(ip) = outside_address() else {
        eprintln!("skipping: this machine has no address but loopback");
        return;
    };
    // Each case: the server's flags, and what a PING from the other address gets.
    let cases: [(&[&str], &str); 3] = [
        (&[], ""),
        (
            &["--requirepass", "pw"],
            "-NOAUTH Authentication required.\r\n",
        ),
        (&["--protected-mode", "no"], "+PONG\r\n"),
    ];
    for (extra, want) in cases {
        let dir = tempdir();
        let server = Server::start(dir.path(), &[&["--bind", "0.0.0.0"], extra].concat());
        let mut remote = Raw::connect(&format!("{ip}:{}", server.port));
        remote.send(b"PING\r\n");
        if want.is_empty() {
            let got = String::from_utf8_lossy(&remote.read_to_close()).into_owned();
            assert!(
                got.starts_with(
                    "-DENIED Redis is running in protected mode because protected mode is \
                     enabled and no password is set for the default user."
                ) && got.ends_with("to start accepting connections from the outside.\r\n"),
                "{got:?}"
            );
            // Loopback clients are served all the same.
            let mut local = server.raw();
            local.send(b"PING\r\n");
            local.expect(b"+PONG\r\n");
        } else {
            remote.expect(want.as_bytes());
        }
    }
}
