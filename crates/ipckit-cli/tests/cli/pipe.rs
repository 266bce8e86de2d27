//! `ipckit pipe serve|send` and `ipckit ls`.

use std::io::{Read, Write};

use crate::common::{pattern, wait_until, ByteStream, Proc, TestNs, DEADLINE};
use ipckit::pipe::{ClientOptions, NamedPipe, PipeMode, ServerOptions};
use ipckit::Transport;

/// Connect from the test process, waiting (bounded) for the server.
fn connect(t: &TestNs, name: &str) -> NamedPipe {
    ClientOptions::new()
        .namespace(&t.ns)
        .timeout(DEADLINE)
        .connect(name)
        .unwrap_or_else(|e| panic!("cannot connect to '{name}': {e}"))
}

/// `ipckit pipe serve NAME <extra>`.
fn serve(t: &TestNs, name: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["pipe", "serve", name];
    args.extend_from_slice(extra);
    t.start(&args)
}

fn ls_json(t: &TestNs) -> serde_json::Value {
    let out = t.run(&["ls", "--json"]);
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {out:#?}"))
}

fn endpoint<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["endpoints"]
        .as_array()
        .expect("endpoints array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint '{name}' in {v}"))
}

#[test]
fn sixteen_cli_clients_in_parallel_each_get_their_own_echo() {
    let t = TestNs::new();
    let server = serve(&t, "echo", &["--echo"]);
    assert_eq!(
        connect(&t, "echo").transact(b"warm-up").unwrap(),
        b"warm-up"
    );
    let clients: Vec<(String, Proc)> = (0..16)
        .map(|i| {
            let msg = format!("client {i} says {}", "x".repeat(i * 7));
            let p = t.start(&["pipe", "send", "echo", &msg, "--timeout", "20s"]);
            (msg, p)
        })
        .collect();
    for (msg, p) in clients {
        let out = p.finish(DEADLINE);
        out.assert_success();
        assert_eq!(out.stdout, format!("{msg}\n"), "{out:#?}");
    }
    let errs = server.stderr_so_far();
    assert!(
        !errs.contains("client dropped"),
        "server complained: {errs}"
    );
}

#[test]
fn serve_without_echo_prints_each_message_and_acknowledges_it_empty() {
    let t = TestNs::new();
    let server = serve(&t, "printer", &[]);
    let out = t.run(&["pipe", "send", "printer", "first", "--timeout", "20s"]);
    out.assert_success();
    assert_eq!(out.stdout, "\n", "the empty acknowledgement: {out:#?}");
    let mut c = connect(&t, "printer");
    assert_eq!(c.transact(b"second").unwrap(), b"");
    wait_until(DEADLINE, "the server printed both messages", || {
        server.stdout_so_far() == "first\nsecond\n"
    });
}

#[test]
fn busy_and_absent_servers_fail_send_with_one_line_naming_the_cause() {
    let t = TestNs::new();
    // No server: a bounded wait names the pipe, no wait says why.
    let out = t.run(&["pipe", "send", "nobody", "x", "--timeout", "200ms"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("nobody"), "{out:#?}");
    let out = t.run(&["pipe", "send", "nobody", "x", "--timeout", "0s"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("no pipe server"), "{out:#?}");

    // One instance, held by this process: busy.
    let _server = serve(&t, "one", &["--echo", "--max-instances", "1"]);
    let mut first = connect(&t, "one");
    assert_eq!(first.transact(b"held").unwrap(), b"held");
    let out = t.run(&["pipe", "send", "one", "hi", "--timeout", "0s"]);
    out.assert_one_line_failure();
    assert!(out.stderr.to_lowercase().contains("busy"), "{out:#?}");
    // Once it leaves, the CLI client gets the instance (waiting for the
    // server to notice).
    drop(first);
    let out = t.run(&["pipe", "send", "one", "cli turn", "--timeout", "20s"]);
    out.assert_success();
    assert_eq!(out.stdout, "cli turn\n");
}

#[test]
fn a_send_started_before_the_server_waits_for_it() {
    let t = TestNs::new();
    let mut client = t.start(&["pipe", "send", "late", "from the cli", "--timeout", "20s"]);
    assert!(t.ns.info("late").unwrap().is_none());
    assert!(client.exited().is_none(), "the CLI client gave up at once");
    let _server = serve(&t, "late", &["--echo"]);
    let out = client.finish(DEADLINE);
    out.assert_success();
    assert_eq!(out.stdout, "from the cli\n");
}

#[test]
fn serve_reports_an_oversized_frame_from_a_raw_client_and_stays_in_step() {
    let t = TestNs::new();
    let mut server = serve(&t, "raw", &["--echo", "--max-message", "1024"]);
    drop(connect(&t, "raw")); // the server is up
    let mut s = std::os::unix::net::UnixStream::connect(t.ns.socket_path("raw")).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut hello = [0u8; 16];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"IPCKPIPE");
    let frame = |body: &[u8]| {
        let mut f = vec![1u8, 0, 0, 0];
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(body);
        f
    };
    s.write_all(&frame(&[7u8; 5000])).unwrap();
    s.write_all(&frame(b"after the big one")).unwrap();
    let mut h = [0u8; 8];
    s.read_exact(&mut h).unwrap_or_else(|e| {
        panic!(
            "no echo after the oversized frame ({e}); server said: {}",
            server.stderr_so_far()
        )
    });
    let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body, b"after the big one");
    let report = server.stderr_line("ipckit: ");
    assert!(report.contains("5000 bytes"), "{report}");
    assert!(report.contains("raw"), "{report}");
    assert!(
        !server.stderr_so_far().contains("client dropped"),
        "{}",
        server.stderr_so_far()
    );
}

#[test]
fn ls_shows_a_killed_servers_endpoint_stale_until_the_next_server_replaces_it() {
    let t = TestNs::new();
    let mut first = serve(&t, "svc", &["--echo"]);
    assert_eq!(connect(&t, "svc").transact(b"a").unwrap(), b"a");
    let v = ls_json(&t);
    let e = endpoint(&v, "svc");
    assert_eq!(e["state"], "live", "{v}");
    assert_eq!(e["kind"], "pipe", "{v}");
    assert_eq!(e["pid"], first.pid(), "{v}");

    first.kill();
    let v = ls_json(&t);
    assert_eq!(endpoint(&v, "svc")["state"], "stale", "{v}");
    let out = t.run(&["ls"]);
    out.assert_success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("svc") && l.ends_with("stale")),
        "{out:#?}"
    );

    let second = serve(&t, "svc", &["--echo"]);
    // Connect once the second server has replaced the stale record: a
    // client that still finds it stale fails at once (a dead server is not
    // waited for).
    wait_until(
        DEADLINE,
        "the second server replaces the stale record",
        || {
            t.ns.info("svc")
                .ok()
                .flatten()
                .is_some_and(|i| i.state == ipckit::name::EndpointState::Live && i.pid != 0)
        },
    );
    assert_eq!(connect(&t, "svc").transact(b"b").unwrap(), b"b");
    let v = ls_json(&t);
    let e = endpoint(&v, "svc");
    assert_eq!(e["state"], "live", "{v}");
    assert_eq!(e["pid"], second.pid(), "{v}");
}

#[test]
fn a_second_live_server_of_one_name_fails_with_one_line_and_the_first_keeps_serving() {
    let t = TestNs::new();
    let first = serve(&t, "taken", &["--echo"]);
    assert_eq!(connect(&t, "taken").transact(b"1").unwrap(), b"1");
    let out = t.run(&["pipe", "serve", "taken", "--echo"]);
    out.assert_one_line_failure();
    assert!(out.stderr.contains("taken"), "{out:#?}");
    assert!(out.stderr.contains("live"), "{out:#?}");
    assert_eq!(connect(&t, "taken").transact(b"2").unwrap(), b"2");
    let v = ls_json(&t);
    assert_eq!(endpoint(&v, "taken")["pid"], first.pid(), "{v}");
}

#[test]
fn bad_names_fail_serve_and_send_with_one_line() {
    let t = TestNs::new();
    let long = "a".repeat(300);
    for bad in ["../x", "", long.as_str()] {
        let out = t.run(&["pipe", "serve", bad, "--echo"]);
        out.assert_one_line_failure();
        assert!(
            out.stderr.contains("invalid name"),
            "serve {bad:?}: {out:#?}"
        );
        let out = t.run(&["pipe", "send", bad, "hi", "--timeout", "5s"]);
        out.assert_one_line_failure();
        assert!(
            out.stderr.contains("invalid name"),
            "send {bad:?}: {out:#?}"
        );
    }
    for leaked in ["x.ep", "x.sock", "x"] {
        assert!(!t.outside(leaked).exists(), "{leaked} escaped");
    }
    assert!(t.ns.list().unwrap().is_empty());
}

const STREAM_BYTES: usize = 100 << 20;

/// Chunk sizes that cross frame and buffer boundaries in odd places.
const CHUNKS: [usize; 5] = [65536, 1, 7, 40000, 131072 + 5];

#[test]
fn byte_mode_serve_echo_streams_100_mib_back_intact() {
    let t = TestNs::new();
    let _server = serve(&t, "stream", &["--mode", "byte", "--echo"]);
    let mut c = connect(&t, "stream");
    assert_eq!(c.mode(), PipeMode::Byte);
    // The writer runs ahead of the reader by at most one chunk.
    let (mut out_gen, mut back_gen) = (ByteStream::new(10), ByteStream::new(10));
    let mut out = vec![0u8; 131072 + 5];
    let mut back = vec![0u8; 131072 + 5];
    let mut want = vec![0u8; 131072 + 5];
    let (mut total, mut i) = (0usize, 0usize);
    while total < STREAM_BYTES {
        let n = CHUNKS[i % CHUNKS.len()].min(STREAM_BYTES - total);
        i += 1;
        out_gen.fill(&mut out[..n]);
        c.write_all(&out[..n]).unwrap();
        c.read_exact(&mut back[..n]).unwrap();
        back_gen.fill(&mut want[..n]);
        assert!(
            back[..n] == want[..n],
            "the echo differs after {total} bytes"
        );
        total += n;
    }
}

#[test]
fn byte_mode_serve_without_echo_copies_100_mib_to_stdout_intact() {
    let t = TestNs::new();
    let (mut server, mut server_out) =
        Proc::spawn_with_stdout(&mut t.ipckit(&["pipe", "serve", "sink", "--mode", "byte"]));
    let mut c = connect(&t, "sink");
    let writer = std::thread::spawn(move || {
        let mut gen = ByteStream::new(11);
        let mut buf = vec![0u8; 131072 + 5];
        let (mut total, mut i) = (0usize, 0usize);
        while total < STREAM_BYTES {
            let n = CHUNKS[i % CHUNKS.len()].min(STREAM_BYTES - total);
            i += 1;
            gen.fill(&mut buf[..n]);
            c.write_all(&buf[..n]).unwrap();
            total += n;
        }
        Write::flush(&mut c).unwrap();
    });
    let reader = std::thread::spawn(move || {
        let mut gen = ByteStream::new(11);
        let (mut buf, mut want) = (vec![0u8; 100_000], vec![0u8; 100_000]);
        let mut total = 0usize;
        while total < STREAM_BYTES {
            let n = server_out.read(&mut buf).unwrap();
            assert!(n > 0, "server stdout ended after {total} bytes");
            gen.fill(&mut want[..n]);
            assert!(buf[..n] == want[..n], "stdout differs after {total} bytes");
            total += n;
        }
    });
    // Both threads finish on their own unless bytes are lost; if the bounded
    // wait fails, dropping `server` kills it and unblocks both.
    wait_until(DEADLINE * 4, "the stream was written and read", || {
        writer.is_finished() && reader.is_finished()
    });
    writer.join().unwrap();
    reader.join().unwrap();
    server.kill();
}

#[test]
fn tcp_send_reaches_a_library_server_and_serve_tcp_a_library_client() {
    let t = TestNs::new();
    let server = ServerOptions::new()
        .namespace(&t.ns)
        .tcp("127.0.0.1:0")
        .create("net")
        .unwrap();
    let addr = server.tcp_addr().unwrap();
    let handler = std::thread::spawn(move || {
        let mut conn = server.accept_timeout(DEADLINE)?;
        let msg = conn.recv_timeout(DEADLINE)?;
        conn.send(&msg.to_ascii_uppercase())
    });
    let out = t.run(&[
        "pipe",
        "send",
        &format!("tcp://{addr}"),
        "over tcp",
        "--timeout",
        "20s",
    ]);
    out.assert_success();
    assert_eq!(out.stdout, "OVER TCP\n");
    handler.join().unwrap().unwrap();

    // `serve --tcp` with port 0 says which port it took.
    let mut cli = serve(&t, "net2", &["--echo", "--tcp", "127.0.0.1:0"]);
    let line = cli.stderr_line("serving pipe 'net2'");
    let target = line
        .split("(and ")
        .nth(1)
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no TCP address in {line:?}"))
        .to_string();
    let mut c = NamedPipe::connect(&target, DEADLINE).unwrap();
    assert_eq!(c.transact(b"hello").unwrap(), b"hello");
    let big = pattern(300_000, 11);
    assert_eq!(c.transact(&big).unwrap(), big);
    assert_eq!(connect(&t, "net2").transact(b"local").unwrap(), b"local");
}

#[test]
fn send_json_reports_the_transport_agreed_and_both_sides_can_opt_out() {
    let t = TestNs::new();
    let _m = serve(&t, "m", &["--echo"]);
    let json = |args: &[&str], env: Option<&str>| {
        let mut cmd = t.ipckit(args);
        if let Some(v) = env {
            cmd.env(ipckit::transport::TRANSPORT_ENV, v);
        }
        let out = Proc::spawn(&mut cmd).finish(DEADLINE);
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {out:#?}"));
        v
    };
    let send = ["pipe", "send", "m", "hi", "--json", "--timeout", "20s"];
    let v = json(&send, None);
    assert_eq!(v["transport"], "shm", "{v}");
    assert_eq!(v["reply"], "hi", "{v}");
    assert!(v["rtt_ns"].as_u64().unwrap() > 0, "{v}");
    // Opted out: by the environment, by the flag.
    let v = json(&send, Some("socket"));
    assert_eq!(v["transport"], "socket", "{v}");
    let mut flagged = send.to_vec();
    flagged.extend(["--transport", "socket"]);
    let v = json(&flagged, None);
    assert_eq!(v["transport"], "socket", "{v}");
    assert_eq!(v["reply"], "hi", "{v}");
    // The server opting out, and byte mode, stay on the socket.
    let _ms = serve(&t, "m-sock", &["--echo", "--transport", "socket"]);
    let mut c = connect(&t, "m-sock");
    assert_eq!(c.transport(), Transport::Socket);
    assert_eq!(
        c.transact(b"server opted out").unwrap(),
        b"server opted out"
    );
    let _b = serve(&t, "b", &["--echo", "--mode", "byte"]);
    let mut c = connect(&t, "b");
    assert_eq!(c.transport(), Transport::Socket);
    c.write_all(b"bytes").unwrap();
    let mut got = [0u8; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"bytes");
    // A client of an opted-out server reports the socket too.
    let v = json(
        &["pipe", "send", "m-sock", "x", "--json", "--timeout", "20s"],
        None,
    );
    assert_eq!(v["transport"], "socket", "{v}");
}

#[test]
fn allow_uid_is_a_global_flag_of_uids() {
    let t = TestNs::new();
    t.run(&["--allow-uid", "1001,1002", "ls"]).assert_success();
    t.run(&["ls", "--allow-uid", "1003"]).assert_success();
    let bad = t.run(&["--allow-uid", "nobody", "ls"]);
    assert!(!bad.status.success(), "{bad:#?}");
    assert!(bad.stderr.contains("allow-uid"), "{bad:#?}");
}

#[test]
fn send_timeout_bounds_the_wait_for_a_reply_that_never_comes() {
    let t = TestNs::new();
    // A server that takes the message and never answers.
    let server = ServerOptions::new()
        .namespace(&t.ns)
        .create("mute")
        .unwrap();
    let holder = std::thread::spawn(move || {
        let mut c = server.accept().unwrap();
        let _ = c.recv();
        // Hold the connection open until the client gives up.
        let _ = c.recv();
    });
    let o = t
        .start(&["pipe", "send", "mute", "hi", "--timeout", "1s"])
        .finish(DEADLINE);
    o.assert_one_line_failure();
    assert!(o.stderr.contains("no reply within"), "{o:#?}");
    holder.join().unwrap();
}

#[test]
fn serve_count_exits_after_that_many_clients_and_timeout_bounds_the_wait() {
    let t = TestNs::new();
    let mut s = serve(&t, "two", &["--echo", "--count", "2"]);
    for i in 0..2 {
        let mut p = connect(&t, "two");
        assert_eq!(
            p.transact(format!("m{i}").as_bytes()).unwrap(),
            format!("m{i}").as_bytes()
        );
    }
    s.wait_success(DEADLINE);
    assert!(t.ns.info("two").unwrap().is_none());
    // --count not reached within --timeout: a failure naming the pipe (the
    // last stderr line; the first is the "serving" status line).
    let o = t
        .start(&[
            "pipe",
            "serve",
            "lonely",
            "--count",
            "1",
            "--timeout",
            "300ms",
        ])
        .finish(DEADLINE);
    assert!(!o.status.success(), "{o:#?}");
    let last = o.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ipckit: 'lonely':") && last.contains("0 of 1 clients"),
        "{o:#?}"
    );
    // --timeout alone just ends serving.
    t.start(&["pipe", "serve", "brief", "--timeout", "300ms"])
        .wait_success(DEADLINE);
}
