//! Two processes and a named pipe: this program serves, and starts a copy of
//! itself as the client.
//!
//! ```sh
//! cargo run -p ipckit --example named_pipe
//! ```

use std::time::{Duration, Instant};

use ipckit::pipe::{NamedPipe, ServerOptions};

fn main() -> Result<(), ipckit::Error> {
    if std::env::args().nth(1).as_deref() == Some("client") {
        // process B
        let mut pipe = NamedPipe::connect("example/upper", Duration::from_secs(10))?;
        for word in ["hello", "named", "pipes"] {
            let t = Instant::now();
            let reply = pipe.transact(word.as_bytes())?;
            println!(
                "client: {word} -> {} in {:?}",
                String::from_utf8_lossy(&reply),
                t.elapsed()
            );
        }
        return Ok(());
    }
    // process A
    let dir = tempfile::tempdir().map_err(|e| {
        ipckit::Error::new(ipckit::ErrorKind::Io, "cannot create a namespace").with_source(e)
    })?;
    std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    let server = ServerOptions::new().create("example/upper")?;
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("client")
        .spawn()
        .expect("start the client process");
    let served = serve_one(&server);
    let _ = child.wait();
    served
}

fn serve_one(server: &ipckit::pipe::PipeServer) -> Result<(), ipckit::Error> {
    let mut conn = server.accept_timeout(Duration::from_secs(10))?;
    println!("server: client pid {:?} connected", conn.peer().pid);
    while let Ok(msg) = conn.recv() {
        conn.send(&msg.to_ascii_uppercase())?;
    }
    Ok(())
}
