//! `ipckit demo`: a tour in which real processes talk through each
//! mechanism. Every step starts its child processes — this same binary,
//! through its public subcommands (`pipe serve`/`send`, `slot read`/`send`,
//! `msg listen`, `service demo`, `call`, `map set`/`watch`) — in a private
//! temporary namespace, talks to them from this process too, and prints
//! what they exchanged and how fast.
//!
//! The helpers for those children (used by the steps in `slot`, `msg`,
//! `service` and `map`) are here.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipckit::pipe::ClientOptions;
use ipckit::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use super::{map, msg, service, slot};
use crate::util::{percentile, us, Reaped};

/// How long any child of the demo may take.
pub(super) const CHILD_LIMIT: Duration = Duration::from_secs(20);

pub(super) fn io(e: std::io::Error, what: &str) -> Error {
    Error::new(ErrorKind::Io, format!("demo: {what}: {e}")).with_source(e)
}

/// `ipckit <args>` (this binary) in the demo namespace, stdin from
/// /dev/null.
pub(super) fn child(ns: &Path, args: &[&str]) -> Result<Command, Error> {
    let exe = std::env::current_exe().map_err(|e| io(e, "cannot find the ipckit binary"))?;
    let mut c = Command::new(exe);
    c.args(args)
        .env(ipckit::name::NAMESPACE_ENV, ns)
        .stdin(Stdio::null());
    Ok(c)
}

/// Start a child, killed and reaped when the guard drops.
pub(super) fn spawn(mut c: Command) -> Result<Reaped, Error> {
    c.spawn()
        .map(Reaped)
        .map_err(|e| io(e, "cannot start a child"))
}

/// Run a child to a successful end (bounded).
pub(super) fn run_child(c: Command) -> Result<(), Error> {
    spawn(c)?.wait(CHILD_LIMIT)
}

/// Run a child to a successful end (bounded) and return its stdout.
pub(super) fn child_output(mut c: Command) -> Result<String, Error> {
    c.stdout(Stdio::piped());
    let mut p = spawn(c)?;
    let mut out = p.stdout().expect("piped above");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    p.wait(CHILD_LIMIT)?;
    Ok(reader.join().unwrap_or_default())
}

/// A child's stdout (or stderr), line by line, on a channel (so reads can
/// be bounded).
pub(super) fn lines(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (bounded) until `name` has a live owner.
pub(super) fn wait_live(ns: &ipckit::Namespace, name: &str) -> Result<(), Error> {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        if ns
            .info(name)?
            .is_some_and(|i| i.state == ipckit::name::EndpointState::Live)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "demo: the endpoint did not appear in time",
            )
            .with_name(name));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child's `--json` output that does not parse.
pub(super) fn bad_json(e: serde_json::Error, out: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("demo: a child printed something other than JSON ({e}): {out}"),
    )
    .with_source(e)
}

pub fn run() -> Result<(), Error> {
    // A fresh namespace of its own, inside the one given (--namespace or
    // IPCKIT_NAMESPACE) if any, else in the temporary directory; removed
    // at the end.
    let parent = std::env::var_os(ipckit::name::NAMESPACE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let root: PathBuf = parent.join(format!("ipckit-demo-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&root)?;
    println!(
        "ipckit demo — namespace {}",
        crate::util::shown_dir(ns.dir())
    );
    let result = steps(ns.dir());
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn steps(ns: &Path) -> Result<(), Error> {
    step_pipe(ns)?;
    slot::demo_step(ns)?;
    msg::demo_step(ns)?;
    service::demo_step(ns)?;
    map::demo_step(ns)?;
    step_clipboard(ns)?;
    step_dde(ns)?;
    println!("\ndemo finished: every step ran between separate processes.");
    Ok(())
}

/// The structured message the pipe step sends (postcard-encoded).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greeting {
    seq: u32,
    from_pid: u32,
    text: String,
    values: Vec<f64>,
}

fn step_pipe(ns: &Path) -> Result<(), Error> {
    println!("\n[pipe] named pipe: echo server process <-> client processes (message mode)");
    let mut server = child(ns, &["pipe", "serve", "demo/echo", "--echo"])?;
    server.stderr(Stdio::null());
    let _server = spawn(server)?;
    // Client processes: `ipckit pipe send`, each one a process of its own.
    for i in 1..=3 {
        let text = format!("hello from client process {i}");
        let args = [
            "pipe",
            "send",
            "demo/echo",
            &text,
            "--json",
            "--timeout",
            "10s",
        ];
        let out = child_output(child(ns, &args)?)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| bad_json(e, &out))?;
        println!(
            "  client process {i} sent {text:?}; the echo server replied {} over {} in {}",
            v["reply"],
            v["transport"].as_str().unwrap_or("?"),
            us(v["rtt_ns"].as_u64().unwrap_or(0))
        );
    }
    // This process as a client too: a postcard-encoded struct, then many
    // round trips of it.
    let nsp = ipckit::Namespace::at(ns)?;
    let mut pipe = ClientOptions::new()
        .namespace(&nsp)
        .timeout(Duration::from_secs(10))
        .connect("demo/echo")?;
    let msg = Greeting {
        seq: 1,
        from_pid: std::process::id(),
        text: "hello from the demo process".into(),
        values: vec![3333.0, 20.01],
    };
    let bytes = postcard::to_stdvec(&msg).expect("greeting encodes");
    let t = Instant::now();
    let reply = pipe.transact(&bytes)?;
    let first = t.elapsed();
    let back: Greeting = postcard::from_bytes(&reply).map_err(|e| {
        Error::new(ErrorKind::Decode, "the echo did not decode as a Greeting").with_source(e)
    })?;
    let transport = super::pipe::pipe_transport(&pipe);
    println!(
        "  demo process pid {} sent {msg:?}\n  the echo server replied {back:?} (intact: {}), first round trip {}",
        std::process::id(),
        back == msg,
        us(first.as_nanos() as u64)
    );
    let rounds = 2000;
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        pipe.transact(&bytes)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    println!(
        "  {rounds} more round trips of {} bytes over {transport}: p50 {} p99 {} (`ipckit bench` compares with raw floors)",
        bytes.len(),
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 99.0)),
    );
    Ok(())
}

/// The raw floor for one step's latencies: round trips of `size` bytes
/// over a bare Unix socket pair to another process (`cat`, echoing its
/// stdin to its stdout, both the socket), sorted, in ns.
#[cfg(unix)]
pub(super) fn raw_socket_round_trips(rounds: usize, size: usize) -> Result<Vec<u64>, Error> {
    use std::io::Write as _;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    let (mut mine, theirs) = UnixStream::pair().map_err(|e| io(e, "cannot make a socket pair"))?;
    let theirs: OwnedFd = theirs.into();
    let out = theirs
        .try_clone()
        .map_err(|e| io(e, "cannot duplicate a socket"))?;
    let mut c = Command::new("cat");
    c.stdin(Stdio::from(theirs))
        .stdout(Stdio::from(out))
        .stderr(Stdio::null());
    let _cat = spawn(c)?;
    mine.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| io(e, "cannot set a socket timeout"))?;
    let msg = vec![7u8; size];
    let mut back = vec![0u8; size];
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        mine.write_all(&msg)
            .and_then(|_| mine.read_exact(&mut back))
            .map_err(|e| io(e, "the raw echo process (cat) stopped answering"))?;
        if i >= rounds / 10 {
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }
    lat.sort_unstable();
    Ok(lat)
}

/// p50 of `rounds` timings of `f` (after a tenth as many untimed), in ns.
fn p50_of(rounds: usize, mut f: impl FnMut() -> Result<(), Error>) -> Result<u64, Error> {
    for _ in 0..rounds / 10 {
        f()?;
    }
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    Ok(percentile(&lat, 50.0))
}

fn step_clipboard(ns: &Path) -> Result<(), Error> {
    use ipckit::clipboard::{BoardOptions, Format};
    println!("\n[clipboard] board: this process sets an item in three formats, one rendered on demand; other processes list, read and watch it");
    let board_name = "demo/clipboard";
    let nsp = ipckit::Namespace::at(ns)?;
    let opts = BoardOptions::new().namespace(&nsp);
    let board = opts.open(board_name)?;
    let mut watch = child(
        ns,
        &["clip", "watch", "--board", board_name, "--count", "1"],
    )?;
    watch.stdout(Stdio::piped());
    // On Windows it says `watching board` on stderr: not for the tour.
    #[cfg(windows)]
    watch.stderr(Stdio::null());
    let mut watcher = spawn(watch)?;
    let changes = lines(watcher.stdout().expect("piped above"));
    // The watcher prints its first line for the first set after it started
    // watching: set until it reports one.
    let csv = Format::register_in(&nsp, "demo/csv")?;
    let deadline = Instant::now() + CHILD_LIMIT;
    let (first, owner) = loop {
        let mut tx = board.begin();
        tx.empty();
        tx.set(
            Format::TEXT,
            ipckit::clipboard::text_to_bytes("EURUSD 1.0842"),
        )?;
        tx.set(csv, b"pair,price\nEURUSD,1.0842\n".to_vec())?;
        tx.promise(Format::UNICODE_TEXT)?;
        let me = std::process::id();
        let owner = tx.close_with_renderer(move |f| {
            (f == Format::UNICODE_TEXT).then(|| {
                ipckit::clipboard::text_to_unicode(&format!(
                    "EURUSD 1.0842 (rendered on demand by pid {me})"
                ))
            })
        })?;
        match changes.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => break (line, owner),
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "demo: the clip watch process reported no change",
                ))
            }
        }
    };
    println!(
        "  `clip watch` process pid {} printed: {first}",
        watcher.0.id()
    );
    let formats = child_output(child(ns, &["clip", "formats", "--board", board_name])?)?;
    println!(
        "  `clip formats` process listed: {}",
        formats.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let got = child_output(child(
        ns,
        &["clip", "get", "--board", board_name, "--format", "demo/csv"],
    )?)?;
    println!("  `clip get --format demo/csv` process read: {:?}", got);
    let rendered = child_output(child(
        ns,
        &[
            "clip",
            "get",
            "--board",
            board_name,
            "--format",
            "unicode-text",
        ],
    )?)?;
    println!(
        "  `clip get --format unicode-text` process read: {:?}",
        rendered.trim_end()
    );
    drop(owner);
    // Set and get cost, beside a plain copy of the same bytes.
    for size in [64usize, 1 << 20] {
        let data = vec![b'x'; size];
        let set = p50_of(200, || board.set(csv, data.clone()).map(|_| ()))?;
        let get = p50_of(200, || board.get(csv).map(|_| ()))?;
        let mut dst = vec![0u8; size];
        let copy = p50_of(200, || {
            dst.copy_from_slice(std::hint::black_box(&data));
            std::hint::black_box(&dst);
            Ok(())
        })?;
        println!(
            "  {size} bytes: set p50 {} ({:.1}x a memcpy of them, {}; set takes the bytes by value, so this includes copying them into a Vec), get p50 {} ({:.1}x)",
            us(set),
            set as f64 / copy.max(1) as f64,
            us(copy),
            us(get),
            get as f64 / copy.max(1) as f64,
        );
    }
    drop(board);
    opts.remove(board_name)?;
    Ok(())
}

fn step_dde(ns: &Path) -> Result<(), Error> {
    use ipckit::clipboard::Format;
    use ipckit::dde::{ConversationOptions, Link};
    println!("\n[dde] DDE: a `dde serve` process with topic 'prices'; client processes request, poke and execute; this process holds a hot link");
    let service = "demo/quotes";
    let mut server = child(
        ns,
        &[
            "dde",
            "serve",
            service,
            "--topic",
            "prices",
            "--item",
            "EURUSD=1.0842",
        ],
    )?;
    server.stdout(Stdio::null()).stderr(Stdio::null());
    let _server = spawn(server)?;
    let nsp = ipckit::Namespace::at(ns)?;
    wait_live(&nsp, service)?;
    let v = child_output(child(ns, &["dde", "request", service, "prices", "EURUSD"])?)?;
    println!("  `dde request` process got EURUSD = {}", v.trim());
    let conv = ConversationOptions::new()
        .namespace(&nsp)
        .timeout(Duration::from_secs(10))
        .connect(service, "prices")?;
    let mut hot = conv.advise("EURUSD", Format::TEXT, Link::Hot)?;
    run_child(child(
        ns,
        &["dde", "poke", service, "prices", "EURUSD", "1.0851"],
    )?)?;
    let u = hot.recv_timeout(Duration::from_secs(10))?;
    println!(
        "  a `dde poke` process set EURUSD; this process's hot link received {:?}",
        ipckit::clipboard::text_from_bytes(u.data.as_deref().unwrap_or_default())
    );
    run_child(child(
        ns,
        &["dde", "execute", service, "prices", "set EURUSD 1.0860"],
    )?)?;
    let u = hot.recv_timeout(Duration::from_secs(10))?;
    println!(
        "  a `dde execute \"set EURUSD 1.0860\"` process; the hot link received {:?}",
        ipckit::clipboard::text_from_bytes(u.data.as_deref().unwrap_or_default())
    );
    // Latency: execute `set` and wait for the value pushed back on the hot
    // link (one round trip between the two processes), beside a bare
    // Unix-socket round trip to another process.
    let mut i = 0u64;
    let update = p50_of(500, || {
        i += 1;
        conv.execute(&format!("set EURUSD {i}"))?;
        loop {
            let u = hot.recv_timeout(Duration::from_secs(10))?;
            let text = ipckit::clipboard::text_from_bytes(u.data.as_deref().unwrap_or_default());
            if text == i.to_string() {
                return Ok(());
            }
        }
    })?;
    #[cfg(unix)]
    {
        let floor = raw_socket_round_trips(500, 64)?;
        let floor = percentile(&floor, 50.0);
        println!(
            "  execute `set` + hot-link update back: p50 {} = {:.1}x a bare Unix-socket round trip between two processes ({})",
            us(update),
            update as f64 / floor.max(1) as f64,
            us(floor)
        );
    }
    #[cfg(windows)]
    println!("  execute `set` + hot-link update back: p50 {}", us(update));
    Ok(())
}
