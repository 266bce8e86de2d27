//! criterion benches of ipckit's paths beside raw floors, for development
//! (`cargo bench -p ipckit --bench ipc`; `-- --test` runs each once).
//! `ipckit bench` is the cross-process report; these run the peer on a
//! thread of the same process instead (a bench binary cannot re-exec
//! itself as a peer the way the CLI does), so they suit before/after
//! comparisons of one path, not the ratios the targets use.
//!
//! Each ipckit path loops over [`TRANSPORTS`]: a new transport (e.g.
//! shared memory) is one more entry there.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipckit::pipe::{ClientOptions as PipeClientOptions, ServerOptions as PipeServerOptions};
use ipckit::service::{ClientBuilder as ServiceClientOptions, RemoteError, Server, ServerBuilder};
use ipckit::{ErrorKind, Namespace};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const WAIT: Duration = Duration::from_secs(10);
const MIB: usize = 1 << 20;

/// How both ends of a path are configured for one transport.
struct Transport {
    name: &'static str,
    pipe_server: fn(PipeServerOptions) -> PipeServerOptions,
    pipe_client: fn(PipeClientOptions) -> PipeClientOptions,
    service_server: fn(ServerBuilder) -> ServerBuilder,
    service_client: fn(ServiceClientOptions) -> ServiceClientOptions,
}

const TRANSPORTS: &[Transport] = &[Transport {
    name: "unix",
    pipe_server: |o| o,
    pipe_client: |o| o,
    service_server: |b| b,
    service_client: |o| o,
}];

/// A byte buffer postcard carries as one length-prefixed block.
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn floors(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    // Raw Unix-socket ping-pong, 64 bytes, the echo on a thread.
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 64];
    g.bench_function("unix-stream/64B", |bench| {
        bench.iter(|| {
            a.write_all(black_box(&buf)).expect("write");
            a.read_exact(&mut buf).expect("read");
        })
    });
    drop(a);
    echo.join().expect("echo thread");

    let src = vec![7u8; MIB];
    let mut dst = vec![0u8; MIB];
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("memcpy/1MiB", |bench| {
        bench.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}

fn pipes(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe");
    for t in TRANSPORTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = Namespace::at(dir.path()).expect("namespace");
        let mut so = PipeServerOptions::new();
        so = so.namespace(&ns);
        so = (t.pipe_server)(so);
        let server = so.create("bench/echo").expect("create the pipe");
        let echo = std::thread::spawn(move || {
            let mut conn = server.accept_timeout(WAIT).expect("accept");
            let mut buf = [0u8; 256];
            loop {
                match conn.recv_into(&mut buf) {
                    Ok(n) => conn.send(&buf[..n]).expect("echo"),
                    Err(e) if e.kind() == ErrorKind::PeerGone => break,
                    Err(e) => panic!("echo: {e}"),
                }
            }
        });
        let mut co = PipeClientOptions::new();
        co = co.namespace(&ns).timeout(WAIT);
        co = (t.pipe_client)(co);
        let mut pipe = co.connect("bench/echo").expect("connect");
        let msg = [0u8; 64];
        g.bench_function(format!("{}/64B", t.name), |bench| {
            bench.iter(|| pipe.transact(black_box(&msg)).expect("transact"))
        });
        drop(pipe);
        echo.join().expect("echo thread");
    }
    g.finish();
}

fn services(c: &mut Criterion) {
    let mut g = c.benchmark_group("service");
    for t in TRANSPORTS {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = Namespace::at(dir.path()).expect("namespace");
        let b = Server::builder("bench/echo")
            .namespace(&ns)
            .raw_handler("echo", |_enc, body: &[u8]| {
                Ok::<_, RemoteError>(body.to_vec())
            });
        let _server = (t.service_server)(b).bind().expect("bind the service");
        let mut co = ServiceClientOptions::new();
        co = co.namespace(&ns).timeout(WAIT);
        co = (t.service_client)(co);
        let client = co.connect("bench/echo").expect("connect");
        for (label, size) in [("64B", 64), ("1MiB", MIB)] {
            let req = vec![1u8; size];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(format!("{}/{label}", t.name), |bench| {
                bench.iter(|| {
                    let r: Bytes = client
                        .call("echo", &BytesRef(black_box(&req)))
                        .expect("call");
                    assert_eq!(r.0.len(), size);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, floors, pipes, services);
criterion_main!(benches);
